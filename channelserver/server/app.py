"""One running ASGI application instance: its task, its ``receive()`` and ``send()``.

``receive()`` pops from a queue the protocol machine fills (``Deliver`` actions); it waits
on one future when the queue is empty. ``send()`` hands the message to the machine,
executes what it returns, and waits while the transport's write buffer is full. What the
app's task ends with (a return, an exception, a cancellation) goes to the machine as the
input "app returned".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import ASGIProtocolError, ClientDisconnected
from ..protocol.scope import peer
from .tasks import EAGER, abandon, awaiting, start_task

if TYPE_CHECKING:
    from .connection import ConnectionProtocol

__all__ = ["AppInstance"]

error_log = logging.getLogger("channelserver.error")
access_log = logging.getLogger("channelserver.access")

_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})


class AppInstance:
    __slots__ = (
        "cancel_handle",
        "cancelled_at",
        "conn",
        "coro",
        "cycle",
        "disconnected_at",
        "eager",
        "failure",
        "finished",
        "last",
        "machine",
        "queue",
        "queued_bytes",
        "scope",
        "started",
        "status",
        "task",
        "waiter",
    )

    def __init__(self, conn: ConnectionProtocol, machine: Any, cycle: Any, scope: dict[str, Any]) -> None:
        self.conn = conn
        self.machine = machine
        self.cycle = cycle
        self.scope = scope
        self.queue: deque[dict[str, Any]] = deque()
        self.queued_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.last: dict[str, Any] | None = None
        self.failure: BaseException | None = None
        self.cancel_handle: asyncio.TimerHandle | None = None
        self.disconnected_at: float | None = None
        self.cancelled_at: float | None = None
        self.status: int | None = None
        self.started = time.monotonic() if conn.state.access_log_enabled else 0.0
        cycle.handle = self
        #: The Task carrying the instance, from start() on.
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        #: True while the app's first step runs inside start(), eagerly (see tasks.py).
        self.eager = False

    def start(self, eager: bool) -> None:
        """Start the instance's Task: eagerly where asyncio can (see tasks.py), so its first
        step has run when this returns; else on the next loop turn."""
        self.coro = coro = self.run()
        if eager and EAGER:
            self.eager = True
            try:
                self.task = start_task(self.conn.loop, coro, True, self.conn.state.context.copy())
            finally:
                self.eager = False
            if not self.finished:
                # The app started a response, then went to wait for something else: the
                # head goes out now rather than with a body part that may be a while.
                self.flush_head()
        else:
            self.task = start_task(self.conn.loop, coro, False, self.conn.state.context.copy())

    # -- the application's view ------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        queue = self.queue
        if not queue:
            last = self.last
            if last is not None and last["type"] in _DISCONNECTS:
                return last
            actions = self.machine.app_wants_body(self.cycle)
            if actions:
                self.conn.run(actions)
            while not queue:
                waiter = self.waiter = self.conn.loop.create_future()
                try:
                    await waiter
                finally:
                    self.waiter = None
        message = queue.popleft()
        self.last = message
        data = message.get("body") or message.get("bytes") or message.get("text")
        if data:
            self.queued_bytes -= len(data)
        elif message["type"] in _DISCONNECTS:
            self.machine.app_got_disconnect(self.cycle)
        conn = self.conn
        if (
            conn.reading_paused
            and self.queued_bytes < conn.state.read_low_water
            and len(queue) < conn.state.queue_high_water
        ):
            conn.resume_input()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        try:
            actions = self.machine.app_send(self.cycle, message)
        except ASGIProtocolError as exc:
            self._misused(exc)
            raise
        if actions:
            self.conn.run(actions)
        elif message.get("type") == "http.response.start":
            # The head is held back to go out with the first body part; if the app waits
            # for something else first, it goes out when its first step ends (start()) or
            # on the next loop turn.
            if not self.eager:
                self.conn.state.flush_head_soon(self)
            if self.started:
                self.status = message.get("status")
        if self.conn.write_paused:
            await self.conn.drain()

    def flush_head(self) -> None:
        if not self.conn.lost:
            try:
                actions = self.machine.flush_head(self.cycle)
            except ASGIProtocolError as exc:  # the head itself is invalid
                self._misused(exc)
                return
            if actions:
                self.conn.run(actions)

    def _misused(self, exc: ASGIProtocolError) -> None:
        """Each refused message is logged once (not again if the app lets the error end
        it) and goes to the machine, which decides what the peer gets (``app_misused``:
        nothing once an HTTP response head stands, else 500 or close 1011)."""
        self.failure = exc
        error_log.error("ASGI protocol error: %s", exc)
        self.conn.run(self.machine.app_misused(self.cycle))

    # -- the server's side -----------------------------------------------------------
    def deliver(self, message: dict[str, Any]) -> None:
        """Queue a message for ``receive()``. Reading from the socket pauses while the
        queue holds more than ``read_high_water`` bytes or ``queue_high_water`` messages,
        so an app that does not receive bounds what the server holds for it."""
        self.queue.append(message)
        data = message.get("body") or message.get("bytes") or message.get("text")
        if data:
            self.queued_bytes += len(data)
        state = self.conn.state
        if self.queued_bytes > state.read_high_water or len(self.queue) > state.queue_high_water:
            self.conn.pause_input()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_gone(self) -> None:
        """The connection is gone: the app has ``app_close_timeout`` to return."""
        if self.finished or self.cancel_handle is not None:
            return
        self.disconnected_at = time.monotonic()
        self.cancel_handle = self.conn.loop.call_later(self.conn.state.config.app_close_timeout, self.cancel_overdue)

    def cancel_overdue(self) -> None:
        """``app_close_timeout`` passed since the disconnect: cancel the Task, once."""
        if self.finished or self.task is None or self.cancelled_at is not None:
            return
        self.cancelled_at = time.monotonic()
        since = self.cancelled_at - (self.disconnected_at or self.cancelled_at)
        where, owner = awaiting(self.coro)
        error_log.warning(
            "Cancelled %s: still running %.1fs after its disconnect (awaiting %s)",
            self.describe(owner),
            since,
            where,
        )
        self.task.cancel()

    def abandon(self) -> None:
        """Cancelled, it went on running (it caught the ``CancelledError``): the server
        exits without it. One WARNING line names it and the line it awaits."""
        if self.finished or self.task is None:
            return
        where, owner = awaiting(self.coro)
        abandon(self.task, self.describe(owner), where)

    def describe(self, owner: str | None = None) -> str:
        scope = self.scope
        app = self.conn.state.app_name
        if owner is not None and owner != app:
            app = f"{app} ({owner})"
        if scope["type"] == "http":
            what = f"{scope['method']} {scope['path']}"
        else:
            what = f"WebSocket {scope['path']}"
        client = scope.get("client")
        who = f" from {peer(client)}" if client else ""
        return f"app instance {app} for {what}{who}"

    async def run(self) -> None:
        exc: BaseException | None = None
        try:
            result: Any = await self.conn.state.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
            if result is not None:
                error_log.warning("ASGI app returned a value (%r); ASGI apps return None (%s)", result, self.describe())
        except asyncio.CancelledError as e:
            exc = e
        except ClientDisconnected as e:
            exc = e
            error_log.info("%s stopped: %s", self.describe(), e)
        except BaseException as e:
            exc = e
            if e is not self.failure:
                error_log.error("Exception in %s", self.describe(), exc_info=e)
        finally:
            self.finished = True
            if self.cancel_handle is not None:
                self.cancel_handle.cancel()
            self.conn.app_finished(self, exc)
