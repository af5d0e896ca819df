"""A fake transport and a fake clock for the asyncio adapter.

Shaped like uvicorn's ``tests/protocols/test_http.py`` ``MockTransport``: it records what
:class:`~channelserver.server.connection.ConnectionProtocol` writes, whether it closed
the transport and when it paused or resumed reading; closing schedules
``connection_lost`` the way a real transport does. :class:`FakeClockLoop` is a real
selector event loop whose ``time()`` only moves when the test calls :meth:`advance`, so
timers fire when the test says, not after real waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from channelserver.config import Config
from channelserver.server.connection import ConnectionProtocol
from channelserver.server.state import ServerState

CLIENT = ("127.0.0.1", 53122)
SERVER = ("127.0.0.1", 8000)

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class MockTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.Protocol | None = None
        self.buffer = bytearray()
        self.closed = False
        self.aborted = False
        self.reading_paused = False
        #: "pause" and "resume", in the order the protocol asked for them.
        self.reading_calls: list[str] = []
        self.wrote = asyncio.Event()
        self.closed_event = asyncio.Event()
        self.reading_resumed = asyncio.Event()
        self.closed_at: float | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": CLIENT, "sockname": SERVER}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.buffer += data
        self.wrote.set()

    def take(self) -> bytes:
        """What was written since the last take."""
        data = bytes(self.buffer)
        self.buffer.clear()
        self.wrote.clear()
        return data

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.closed_at = self.loop.time()
        self.closed_event.set()
        if self.protocol is not None:
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading_paused = True
        self.reading_calls.append("pause")

    def resume_reading(self) -> None:
        self.reading_paused = False
        self.reading_calls.append("resume")
        self.reading_resumed.set()

    def is_reading(self) -> bool:
        return not self.reading_paused


class FakeClockLoop(asyncio.SelectorEventLoop):
    """A real event loop with a clock the test moves."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def connect(app: ASGIApp, **config: Any) -> tuple[ConnectionProtocol, MockTransport]:
    """A ConnectionProtocol for ``app`` on a fresh MockTransport, connection made."""
    loop = asyncio.get_running_loop()
    state = ServerState(Config(**config), app, loop)
    protocol = ConnectionProtocol(state)
    transport = MockTransport(loop)
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


async def turns(n: int = 5) -> None:
    """Let the loop run its ready callbacks ``n`` times (no time passes)."""
    for _ in range(n):
        await asyncio.sleep(0)


def run(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run ``coro`` to its end on a fresh loop (or ``loop``), then close the loop cleanly:
    what is left is cancelled and awaited, async generators are closed."""
    loop = loop or asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
