"""The ``channelserver.drain`` ASGI extension.

Every scope carries ``scope["extensions"]["channelserver.drain"]``, a dict with:

``started``
    an :class:`asyncio.Event`, set when the server begins to drain (shutdown, reload,
    worker recycling). ``await started.wait()`` to learn of it.
``hold``
    (WebSocket scopes) a callable returning a context manager (``with`` or ``async with``).
    While any hold of a connection is active the drain leaves that connection open, up to
    ``graceful_timeout``; when the last hold ends it is closed with 1012. A connection
    with no hold when the drain starts is closed at once, so idle sockets never slow a
    deploy.
``graceful_timeout``
    the bound on holding, in seconds.

An app that does not know the extension is drained at once (WebSocket) or allowed to
finish its response (HTTP), as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["DRAIN_EXTENSION", "ConnectionDrain", "Hold"]

#: The name of the extension in every scope.
DRAIN_EXTENSION = "channelserver.drain"


class Hold:
    """One unit of "busy"; releasing it twice is harmless."""

    __slots__ = ("_drain", "_released")

    def __init__(self, drain: ConnectionDrain) -> None:
        self._drain = drain
        self._released = False
        drain.holds += 1

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._drain.release()

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class ConnectionDrain:
    """The drain state of one WebSocket connection."""

    __slots__ = ("graceful_timeout", "holds", "on_idle", "started", "waiting")

    def __init__(self, started: asyncio.Event, graceful_timeout: float, on_idle: Callable[[], None]) -> None:
        self.started = started
        self.graceful_timeout = graceful_timeout
        self.holds = 0
        self.on_idle = on_idle
        self.waiting = False

    def hold(self) -> Hold:
        return Hold(self)

    def release(self) -> None:
        self.holds -= 1
        if self.holds <= 0 and self.waiting:
            self.waiting = False
            self.on_idle()

    def begin(self) -> bool:
        """The drain started. True if the connection may be closed now."""
        if self.holds <= 0:
            return True
        self.waiting = True
        return False

    def extension(self) -> dict[str, Any]:
        return {"started": self.started, "hold": self.hold, "graceful_timeout": self.graceful_timeout}
