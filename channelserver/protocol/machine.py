"""The one interface of a connection's protocol machine.

A machine is the pure side of one connection: :class:`~.http11.HTTPConnection` until a
WebSocket upgrade, :class:`~.websocket.WebSocketConnection` after it. The I/O layer
(``server/connection.py`` and ``server/app.py``) knows machines only through this
protocol: it feeds them the inputs below and executes the actions they return, in order.

An input a protocol has no use for is answered by the defaults here (no action), so a
machine defines only what it acts on. ``cycle`` is the machine's own object for one
ASGI exchange (an HTTP request, a WebSocket session), handed out in ``StartApp`` and
given back with every app input; the I/O layer never looks inside it.
"""

from __future__ import annotations

from typing import Any, Protocol

from .events import Action

__all__ = ["Machine"]


class Machine(Protocol):
    __slots__ = ()

    # -- from the peer, the clock and the server ---------------------------------------
    def start(self) -> list[Action]:
        """The connection (or the protocol, after an upgrade) begins."""
        ...

    def receive_data(self, data: bytes) -> list[Action]:
        """The peer sent ``data``."""
        ...

    def eof(self) -> list[Action]:
        """The peer closed its side, or the transport was lost."""
        ...

    def timer_fired(self, name: str) -> list[Action]:
        """The timer ``name`` (set by a ``SetTimer`` action) is due."""
        ...

    def shutdown(self) -> list[Action]:
        """The server drains: finish what is in flight, then close."""
        ...

    def force_shutdown(self) -> list[Action]:
        """``graceful_timeout`` passed: close now, whatever is in flight."""
        return self.shutdown()

    def drain_begins(self) -> list[Action]:
        """A drain began; ``shutdown()`` comes ``drain_delay`` later. Meanwhile everything
        is served as before (HTTP: each response says ``connection: close``, so that no
        keep-alive connection is idle when the closing starts)."""
        return []

    # -- from the app instance of a cycle ------------------------------------------------
    def app_send(self, cycle: Any, message: Any) -> list[Action]:
        """The app's ``send(message)``. Raises ``ASGIProtocolError`` for a message the
        cycle's table refuses (it then has no effect), ``ClientDisconnected`` once the peer
        left and the app was told."""
        ...

    def app_misused(self, cycle: Any) -> list[Action]:
        """The app's ``send()`` raised ``ASGIProtocolError``: what the peer gets for it."""
        ...

    def app_returned(self, cycle: Any, exc: BaseException | None) -> list[Action]:
        """The app instance returned (``exc`` None) or raised ``exc``."""
        ...

    def app_wants_body(self, cycle: Any) -> list[Action]:
        """The app awaits ``receive()`` with nothing queued (HTTP: ``100 Continue``)."""
        return []

    def app_got_disconnect(self, cycle: Any) -> None:
        """The app's ``receive()`` just returned the disconnect message."""
        return None

    def flush_head(self, cycle: Any) -> list[Action]:
        """The app started a response and went on to wait for something else (HTTP: write
        the held-back head now)."""
        return []

    # -- for the access log ----------------------------------------------------------------
    def access_facts(self) -> tuple[bool, int | None]:
        """(handshake accepted, close code) of a WebSocket session for its access line;
        ``(True, None)`` for HTTP."""
        return True, None
