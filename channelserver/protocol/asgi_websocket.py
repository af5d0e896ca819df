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

Every other move is an entry of ``EVENTS``, the inputs from the server's side:

    any but CLOSED      --peer gone----------->  CLOSED   (close frame, protocol error, EOF,
                                                           close handshake timed out)
    HANDSHAKE, RESPONSE --app failed---------->  CLOSED   (HTTP 500, or the denial cut short)
    CONNECTED           --app failed---------->  CLOSING  (close 1011)
    CONNECTED           --app returned-------->  CLOSING  (close 1000)
    HANDSHAKE           --handshake timeout--->  CLOSED   (HTTP 503)
    HANDSHAKE           --shutdown------------>  CLOSED   (HTTP 503; a drain first lets the
                                                           app answer, and closes an
                                                           accepted socket with 1012)
    CONNECTED           --shutdown------------>  CLOSING  (close 1012, or the code given)
    CONNECTED           --ping timeout-------->  CLOSING  (close 1011)
    CONNECTED           --message too big----->  CLOSING  (close 1009)

A message is checked first (:meth:`WebSocketCycle.check`) and its move made
(:meth:`WebSocketCycle.commit`) once its fields were accepted: a refused message leaves
the state as it was.

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
from .table import Table, bad_field, check_headers, misuse, not_a_message

__all__ = [
    "APP_FAILED",
    "APP_RETURNED",
    "EVENTS",
    "HANDSHAKE_TIMEOUT",
    "PEER_GONE",
    "PING_TIMEOUT",
    "SHUTDOWN",
    "TOO_BIG",
    "TRANSITIONS",
    "State",
    "WebSocketCycle",
]


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

PEER_GONE = "peer gone"
APP_FAILED = "app failed"
APP_RETURNED = "app returned"
HANDSHAKE_TIMEOUT = "handshake timeout"
SHUTDOWN = "shutdown"
PING_TIMEOUT = "ping timeout"
TOO_BIG = "message too big"

EVENTS: Table = {
    (State.HANDSHAKE, PEER_GONE): State.CLOSED,
    (State.RESPONSE, PEER_GONE): State.CLOSED,
    (State.CONNECTED, PEER_GONE): State.CLOSED,
    (State.CLOSING, PEER_GONE): State.CLOSED,
    (State.HANDSHAKE, APP_FAILED): State.CLOSED,
    (State.RESPONSE, APP_FAILED): State.CLOSED,
    (State.CONNECTED, APP_FAILED): State.CLOSING,
    (State.CONNECTED, APP_RETURNED): State.CLOSING,
    (State.HANDSHAKE, HANDSHAKE_TIMEOUT): State.CLOSED,
    (State.HANDSHAKE, SHUTDOWN): State.CLOSED,
    (State.CONNECTED, SHUTDOWN): State.CLOSING,
    (State.CONNECTED, PING_TIMEOUT): State.CLOSING,
    (State.CONNECTED, TOO_BIG): State.CLOSING,
}


class WebSocketCycle:
    """ASGI-side state of one WebSocket connection."""

    __slots__ = ("disconnect_delivered", "peer_gone", "state", "where")

    def __init__(self, where: str) -> None:
        self.state = State.HANDSHAKE
        self.where = where
        #: The peer (or the transport) went away; messages are dropped until delivered.
        self.peer_gone = False
        #: The app's ``receive()`` has returned ``websocket.disconnect``.
        self.disconnect_delivered = False

    def kind_of(self, message: Any) -> tuple[str, str]:
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise not_a_message(message, self.where) from None
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

    def commit(self, new: State) -> None:
        """Make the move :meth:`check` found in the table, once the message's fields were
        accepted."""
        self.state = new

    def event(self, name: str) -> bool:
        """Apply a server-side input (see ``EVENTS``) if the table has a move for it in this
        state. True if the state moved."""
        new = EVENTS.get((self.state, name))
        if new is None:
            return False
        self.state = new
        return True

    def gone(self) -> bool:
        """The peer (or the transport) went away. True the first time: the app is to be
        handed ``websocket.disconnect``."""
        if self.peer_gone:
            return False
        self.peer_gone = True
        self.event(PEER_GONE)
        return True

    # -- the fields of the app's messages, checked before the move is made -------------
    def accept_fields(self, message: Any, offered: list[str]) -> tuple[str | None, list[tuple[bytes, bytes]]]:
        """``websocket.accept``: (subprotocol, headers). The subprotocol must be one the
        client offered."""
        where = self.where
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise bad_field("websocket.accept", "subprotocol", "a str or None", subprotocol, where)
        if subprotocol is not None and subprotocol not in offered:
            raise ASGIProtocolError(
                f"websocket.accept 'subprotocol' {subprotocol!r} was not offered by the client "
                f"(offered: {', '.join(offered) or 'none'}) ({where})"
            )
        return subprotocol, check_headers("websocket.accept", message.get("headers", ()), self)

    def close_fields(self, message: Any) -> tuple[int, str]:
        """``websocket.close`` after the accept: (code, reason), as a close frame can carry them."""
        code = message.get("code", 1000)
        if code is None:
            code = 1000
        elif type(code) is not int or not (1000 <= code <= 4999) or code in (1004, 1005, 1006, 1015):
            raise bad_field(
                "websocket.close", "code", "a valid close code (1000-4999, not 1005/1006/1015)", code, self.where
            )
        reason = message.get("reason") or ""
        if not isinstance(reason, str):
            raise bad_field("websocket.close", "reason", "a str", reason, self.where)
        if len(reason.encode()) > 123:
            raise ASGIProtocolError(
                f"websocket.close 'reason' is {len(reason.encode())} bytes; a close frame holds at most 123 ({self.where})"
            )
        return code, reason

    def denial_start_fields(self, message: Any) -> tuple[int, list[tuple[bytes, bytes]]]:
        """``websocket.http.response.start``: (status, headers) of the denial response."""
        mtype = "websocket.http.response.start"
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 999:
            raise bad_field(mtype, "status", "an int from 200 to 999, not 101", status, self.where)
        return status, check_headers(mtype, message.get("headers", ()), self)

    def denial_body(self, message: Any) -> bytes:
        """``websocket.http.response.body``: its body."""
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray)):
            raise bad_field("websocket.http.response.body", "body", "bytes", body, self.where)
        return bytes(body)
