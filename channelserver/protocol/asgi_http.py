"""The ASGI HTTP request/response cycle: what the app may send, and when.

One cycle per request. Its only transitions, driven by the app's ``send()``:

    REQUEST  --http.response.start-------------------->  RESPONSE
    RESPONSE --http.response.body (more_body=True)---->  RESPONSE
    RESPONSE --http.response.body (more_body=False)--->  COMPLETE

and one driven by the peer: the client leaving before COMPLETE moves the cycle to
DISCONNECTED, where ``send()`` raises :class:`ClientDisconnected` (an ``OSError``, ASGI
spec 2.4) so a streaming app stops. Any other (state, message) pair raises
:class:`ASGIProtocolError` with the text made by :func:`table.misuse`.
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ASGIProtocolError, ClientDisconnected
from .table import Table, bad_field, check_headers, misuse

__all__ = ["TRANSITIONS", "HTTPCycle", "State"]


class State(enum.Enum):
    # Members are singletons compared by identity; hashing them by identity keeps the
    # table lookups in C (Enum's own __hash__ is a Python function).
    __hash__ = object.__hash__

    REQUEST = "REQUEST"
    RESPONSE = "RESPONSE"
    COMPLETE = "COMPLETE"
    DISCONNECTED = "DISCONNECTED"


TRANSITIONS: Table = {
    (State.REQUEST, "http.response.start"): State.RESPONSE,
    (State.RESPONSE, "http.response.body#more"): State.RESPONSE,
    (State.RESPONSE, "http.response.body"): State.COMPLETE,
}


class HTTPCycle:
    """State of one request/response exchange. ``handle`` is the I/O layer's own slot
    (its app instance); the machine never reads it."""

    __slots__ = ("client", "handle", "method", "pending_start", "state", "target")

    def __init__(self, method: bytes, target: bytes, client: str) -> None:
        self.state = State.REQUEST
        self.method = method
        self.target = target
        self.client = client
        #: (status, headers) of an http.response.start not yet written: it goes out with
        #: the first body part, so a whole response is one write and gets a content-length.
        self.pending_start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.handle: Any = None

    @property
    def where(self) -> str:
        """The request, for error messages: ``GET /path from 127.0.0.1:53122``."""
        return f"{self.method.decode('ascii', 'replace')} {self.target.decode('ascii', 'replace')} from {self.client}"

    def on_app_message(self, message: Any) -> tuple[str, Any]:
        """Check ``message`` against the table and apply it.

        Returns ``("start", None)``, or ``("body", (bytes, more_body))``. Raises
        ``ClientDisconnected`` once the client left, ``ASGIProtocolError`` on misuse.
        """
        state = self.state
        if state is State.DISCONNECTED:
            raise ClientDisconnected(f"client disconnected ({self.where})")
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise ASGIProtocolError(
                f"ASGI message must be a dict with a 'type' key, got {message!r:.80} ({self.where})"
            ) from None
        if mtype == "http.response.body":
            more = bool(message.get("more_body", False))
            kind = "http.response.body#more" if more else "http.response.body"
        else:
            kind = mtype
        new_state = TRANSITIONS.get((state, kind))
        if new_state is None:
            raise misuse(TRANSITIONS, state, mtype, self.where)
        if mtype == "http.response.start":
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 999:
                raise bad_field(mtype, "status", "an int from 100 to 999", status, self.where)
            if status < 200 or status == 101:
                raise ASGIProtocolError(
                    f"http.response.start 'status' {status} is informational; "
                    f"ASGI apps send final responses only ({self.where})"
                )
            headers = message.get("headers", ())
            self.pending_start = (status, check_headers(mtype, headers, self))
            self.state = new_state
            return "start", None
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise bad_field(mtype, "body", "bytes", body, self.where)
        self.state = new_state
        return "body", (bytes(body), new_state is State.RESPONSE)

    def disconnect(self) -> bool:
        """The client left. True if the app has to be told (the response was not complete)."""
        if self.state in (State.REQUEST, State.RESPONSE):
            self.state = State.DISCONNECTED
            return True
        return False
