"""The ASGI HTTP request/response cycle: what the app may send, and when.

One cycle per request. Every move of its state is an entry in one of two tables.
``TRANSITIONS``, driven by the app's ``send()``:

    REQUEST  --http.response.early_hint--------------->  REQUEST   (a 103 with its links)
    REQUEST  --http.response.start-------------------->  RESPONSE
    RESPONSE --http.response.body (more_body=True)---->  RESPONSE
    RESPONSE --http.response.body (more_body=False)--->  COMPLETE
    RESPONSE --http.response.pathsend----------------->  RESPONSE  (the server reads the
                                                                    file and sends it as
                                                                    body parts, the last
                                                                    one completing)

``EVENTS``, driven by the server:

    REQUEST, RESPONSE  --peer gone------>  DISCONNECTED  (the client left first)
    REQUEST, RESPONSE  --app failed----->  FAILED        (500, or a cut-short response)
    RESPONSE           --head refused--->  REQUEST       (the held-back head cannot be written:
                                                          it was never sent)

In DISCONNECTED, ``send()`` raises :class:`ClientDisconnected` (an ``OSError``, ASGI spec
2.4) so a streaming app stops. Any other (state, message) pair raises
:class:`ASGIProtocolError` with the text made by :func:`table.misuse`. A message is
checked first and its move made (:meth:`HTTPCycle.commit`) only once the connection
accepted its bytes: a refused message leaves the state as it was.
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ASGIProtocolError, ClientDisconnected
from .table import Table, bad_field, check_headers, misuse, not_a_message

__all__ = ["APP_FAILED", "EVENTS", "HEAD_REFUSED", "PEER_GONE", "TRANSITIONS", "HTTPCycle", "State"]


class State(enum.Enum):
    # Members are singletons compared by identity; hashing them by identity keeps the
    # table lookups in C (Enum's own __hash__ is a Python function).
    __hash__ = object.__hash__

    REQUEST = "REQUEST"
    RESPONSE = "RESPONSE"
    COMPLETE = "COMPLETE"
    DISCONNECTED = "DISCONNECTED"
    FAILED = "FAILED"


TRANSITIONS: Table = {
    (State.REQUEST, "http.response.start"): State.RESPONSE,
    (State.REQUEST, "http.response.early_hint"): State.REQUEST,
    (State.RESPONSE, "http.response.body#more"): State.RESPONSE,
    (State.RESPONSE, "http.response.body"): State.COMPLETE,
    (State.RESPONSE, "http.response.pathsend"): State.RESPONSE,
}

PEER_GONE = "peer gone"
APP_FAILED = "app failed"
HEAD_REFUSED = "head refused"

EVENTS: Table = {
    (State.REQUEST, PEER_GONE): State.DISCONNECTED,
    (State.RESPONSE, PEER_GONE): State.DISCONNECTED,
    (State.REQUEST, APP_FAILED): State.FAILED,
    (State.RESPONSE, APP_FAILED): State.FAILED,
    (State.RESPONSE, HEAD_REFUSED): State.REQUEST,
}


class HTTPCycle:
    """State of one request/response exchange."""

    __slots__ = ("client", "method", "pending_start", "state", "target")

    def __init__(self, method: bytes, target: bytes, client: str) -> None:
        self.state = State.REQUEST
        self.method = method
        self.target = target
        self.client = client
        #: (status, headers) of an http.response.start not yet written: it goes out with
        #: the first body part, so a whole response is one write and gets a content-length.
        self.pending_start: tuple[int, list[tuple[bytes, bytes]]] | None = None

    @property
    def where(self) -> str:
        """The request, for error messages: ``GET /path from 127.0.0.1:53122``."""
        return f"{self.method.decode('ascii', 'replace')} {self.target.decode('ascii', 'replace')} from {self.client}"

    def on_app_message(self, message: Any) -> tuple[str, Any]:
        """Check ``message`` against the table and its fields.

        Returns ``("start", None)``, the move made (the head is held back in
        ``pending_start``), ``("body", (bytes, more_body, next_state))``, the move to be
        made by :meth:`commit` once the body's bytes were accepted, ``("pathsend", path)``
        (the I/O layer sends the file as body parts) or ``("early_hint", links)``. Raises
        ``ClientDisconnected`` once the client left, ``ASGIProtocolError`` on misuse.
        """
        state = self.state
        if state is State.DISCONNECTED:
            raise ClientDisconnected(f"client disconnected ({self.where})")
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise not_a_message(message, self.where) from None
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
        if mtype == "http.response.pathsend":
            path = message.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise bad_field(mtype, "path", "an absolute path (str)", path, self.where)
            return "pathsend", path
        if mtype == "http.response.early_hint":
            links = message.get("links")
            if not isinstance(links, (list, tuple)) or not all(
                isinstance(link, bytes) and b"\r" not in link and b"\n" not in link for link in links
            ):
                raise bad_field(mtype, "links", "a list of bytes without CR or LF", links, self.where)
            return "early_hint", list(links)
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise bad_field(mtype, "body", "bytes", body, self.where)
        return "body", (bytes(body), more, new_state)

    def commit(self, new_state: State) -> None:
        """Make the move :meth:`on_app_message` found in the table for a body part, once
        the connection accepted its bytes."""
        self.state = new_state

    def event(self, name: str) -> bool:
        """Apply a server-side input (``PEER_GONE``, ``APP_FAILED``, ``HEAD_REFUSED``) if the
        ``EVENTS`` table has a move for it in this state. True if the state moved."""
        new_state = EVENTS.get((self.state, name))
        if new_state is None:
            return False
        self.state = new_state
        return True

    def disconnect(self) -> bool:
        """The client left. True if the app has to be told (the response was not complete)."""
        return self.event(PEER_GONE)
