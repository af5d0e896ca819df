"""The ASGI WebSocket cycle: what the app may send, and when.

Transitions driven by the app's ``send()``:

    HANDSHAKE --websocket.accept-------------------------------->  CONNECTED
    HANDSHAKE --websocket.close--------------------------------->  CLOSED     (HTTP 403)
    HANDSHAKE --websocket.http.response.start------------------->  RESPONSE   (denial)
    RESPONSE  --websocket.http.response.body (more_body=True)--->  RESPONSE
    RESPONSE  --websocket.http.response.body (more_body=False)-->  CLOSED
    CONNECTED --websocket.send---------------------------------->  CONNECTED
    CONNECTED --websocket.close--------------------------------->  CLOSING    (close frame sent)
    CLOSING   --websocket.close--------------------------------->  CLOSING    (no-op)
    CLOSED    --websocket.close--------------------------------->  CLOSED     (no-op)

Transitions driven by the peer or the clock: the peer's close frame, a protocol error,
EOF, or the close handshake timing out move the cycle to CLOSED.

Once CLOSED because of the peer, the app's messages are dropped quietly until the app has
been handed ``websocket.disconnect`` (a consumer that is mid-send still reaches its
disconnect handler); after that ``send()`` raises :class:`ClientDisconnected`. Every other
pair not in the table raises :class:`ASGIProtocolError`.

The receive side, what ``receive()`` returns: ``websocket.connect`` exactly once, then
nothing until the app answered, then ``websocket.receive`` messages, then one
``websocket.disconnect``.
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ASGIProtocolError, ClientDisconnected
from .table import Table, misuse

__all__ = ["TRANSITIONS", "State", "WebSocketCycle"]


class State(enum.Enum):
    __hash__ = object.__hash__  # identity, as in asgi_http.State

    HANDSHAKE = "CONNECTING"
    RESPONSE = "RESPONSE"
    CONNECTED = "CONNECTED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


# Named after the ASGI spec's words: CONNECTING is what apps see in error messages.
TRANSITIONS: Table = {
    (State.HANDSHAKE, "websocket.accept"): State.CONNECTED,
    (State.HANDSHAKE, "websocket.close"): State.CLOSED,
    (State.HANDSHAKE, "websocket.http.response.start"): State.RESPONSE,
    (State.RESPONSE, "websocket.http.response.body#more"): State.RESPONSE,
    (State.RESPONSE, "websocket.http.response.body"): State.CLOSED,
    (State.CONNECTED, "websocket.send"): State.CONNECTED,
    (State.CONNECTED, "websocket.close"): State.CLOSING,
    (State.CLOSING, "websocket.close"): State.CLOSING,
    (State.CLOSED, "websocket.close"): State.CLOSED,
}


class WebSocketCycle:
    """ASGI-side state of one WebSocket connection."""

    __slots__ = ("disconnect_delivered", "handle", "peer_gone", "state", "where")

    def __init__(self, where: str) -> None:
        self.state = State.HANDSHAKE
        self.where = where
        #: The peer (or the transport) went away; messages are dropped until delivered.
        self.peer_gone = False
        #: The app's ``receive()`` has returned ``websocket.disconnect``.
        self.disconnect_delivered = False
        self.handle: Any = None

    def kind_of(self, message: Any) -> tuple[str, str]:
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise ASGIProtocolError(
                f"ASGI message must be a dict with a 'type' key, got {message!r:.80} ({self.where})"
            ) from None
        if mtype == "websocket.http.response.body" and message.get("more_body", False):
            return mtype, mtype + "#more"
        return mtype, mtype

    def check(self, message: Any) -> tuple[str, State, State] | None:
        """Check against the table. Returns ``(type, old_state, new_state)`` (the caller
        validates the fields, then sets ``state``), or None when the message is to be
        dropped quietly: the peer left and the app was not yet told, or a close of a
        connection that is already closed."""
        if self.peer_gone or (self.state is State.CLOSED and self.disconnect_delivered):
            mtype, _ = self.kind_of(message)
            if mtype == "websocket.close" or not self.disconnect_delivered:
                return None
            raise ClientDisconnected(f"WebSocket client disconnected ({self.where})")
        mtype, kind = self.kind_of(message)
        old = self.state
        new = TRANSITIONS.get((old, kind))
        if new is None:
            raise misuse(TRANSITIONS, old, mtype, self.where)
        return mtype, old, new
