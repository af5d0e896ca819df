"""One running ASGI application instance: its task, its ``receive()`` and ``send()``.

``receive()`` pops from a queue the protocol machine fills (``Deliver`` actions); it waits
on one future when the queue is empty. ``send()`` hands the message to the machine,
executes what it returns, and waits while the transport's write buffer is full. What the
app's task ends with (a return, an exception, a cancellation) goes to the host, which
gives it to the machine as the input "app returned".

An instance knows three things: its :class:`~..protocol.machine.Machine` and cycle, its
:class:`Host` (the connection: run actions, pause and resume input, wait for the write
buffer, report finished), and its :class:`InstanceSettings` (values, the same for every
instance of a server).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ASGIProtocolError, ClientDisconnected
from ..protocol.events import Action
from ..protocol.machine import Machine
from ..protocol.scope import peer
from ..types import ASGIApp
from .log import ERROR
from .tasks import EAGER, abandon, awaiting, start_task
from .timers import Entry, TimerHeap

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["AppInstance", "Host", "InstanceSettings"]

error_log = logging.getLogger(ERROR)


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """What every app instance of a server is given."""

    app: ASGIApp
    #: The app's name in log lines.
    app_name: str
    #: What each instance's Task starts from, a fresh copy each (see ``ServerState``).
    context: contextvars.Context
    #: Reading pauses while an instance's queue holds more than ``read_high_water`` bytes
    #: or ``queue_high_water`` messages, and resumes under ``read_low_water``.
    read_high_water: int
    read_low_water: int
    queue_high_water: int
    #: Seconds an instance may run on after its disconnect before it is cancelled.
    app_close_timeout: float
    #: Time each instance (for the access log and the metrics).
    timed: bool
    #: The worker's counters, when ``--metrics`` is set.
    metrics: Metrics | None = None


class Host(Protocol):
    """What an app instance needs of its connection."""

    loop: asyncio.AbstractEventLoop
    #: The worker's deadlines (the app_close_timeout after a disconnect is one).
    timers: TimerHeap

    @property
    def write_paused(self) -> bool:
        """The write buffer is over its high-water mark: ``drain()`` waits."""

    @property
    def reading_paused(self) -> bool:
        """Reading is paused (by ``pause_input``)."""

    @property
    def h2(self) -> bool:
        """The connection speaks HTTP/2: ``send()`` also waits while its stream's
        flow-control window keeps it ``blocked``."""

    @property
    def lost(self) -> bool:
        """The connection is gone."""

    def run(self, actions: list[Action]) -> None:
        """Execute the machine's actions."""

    def pause_input(self) -> None: ...

    def resume_input(self) -> None: ...

    async def drain(self) -> None:
        """Wait until the write buffer is under its low-water mark (or the connection lost)."""

    async def peer_spoke(self) -> None:
        """Wait until the peer sent something (a WINDOW_UPDATE, say) or left."""

    def flush_head_soon(self, instance: AppInstance) -> None:
        """Call ``instance.flush_head()`` on the next loop turn."""

    def app_finished(self, instance: AppInstance, exc: BaseException | None) -> None:
        """The instance's Task ended, returning (``exc`` None) or raising ``exc``."""


_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})

#: How much of a pathsend file is read and sent at a time.
PATHSEND_CHUNK = 256 * 1024


def disconnected_cause(exc: BaseException) -> ClientDisconnected | None:
    """The ClientDisconnected that ``exc`` was raised from or while handling, if any (a few
    links up its chain)."""
    link: BaseException | None = exc
    for _ in range(5):
        link = link.__cause__ or link.__context__ if link is not None else None
        if link is None or isinstance(link, ClientDisconnected):
            return link
    return None


class AppInstance:
    __slots__ = (
        "cancelled_at",
        "coro",
        "cycle",
        "disconnected_at",
        "eager",
        "failure",
        "finished",
        "host",
        "last",
        "machine",
        "more_waiters",
        "queue",
        "queued_bytes",
        "scheduled",
        "scope",
        "sending_file",
        "settings",
        "started",
        "status",
        "task",
        "waiter",
    )

    def __init__(
        self, host: Host, machine: Machine, cycle: Any, scope: dict[str, Any], settings: InstanceSettings
    ) -> None:
        self.host = host
        self.settings = settings
        self.machine = machine
        self.cycle = cycle
        self.scope = scope
        #: Messages for the app's receive(); a list, not a deque: it rarely holds more than
        #: one, and an empty deque costs 600 bytes more per connection.
        self.queue: list[dict[str, Any]] = []
        self.queued_bytes = 0
        #: The future a receive() waits on; those of other tasks of the app waiting at the
        #: same time (a disconnect watcher beside a reader) in more_waiters.
        self.waiter: asyncio.Future[None] | None = None
        self.more_waiters: list[asyncio.Future[None]] | None = None
        self.last: dict[str, Any] | None = None
        self.failure: BaseException | None = None
        #: The app_close_timeout entry in the worker's TimerHeap, once disconnected.
        self.scheduled: dict[str, Entry] | None = None
        self.disconnected_at: float | None = None
        self.cancelled_at: float | None = None
        self.status: int | None = None
        self.started = time.monotonic() if settings.timed else 0.0
        #: The Task carrying the instance, from start() on.
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        #: True while the app's first step runs inside start(), eagerly (see tasks.py).
        self.eager = False
        #: A pathsend is being read: the held-back head waits for the file's first part
        #: (a file read in one part is a whole response, with its content-length).
        self.sending_file = False

    def start(self, eager: bool) -> None:
        """Start the instance's Task: eagerly where asyncio can (see tasks.py), so its first
        step has run when this returns; else on the next loop turn."""
        self.coro = coro = self.run()
        if eager and EAGER:
            self.eager = True
            try:
                self.task = start_task(self.host.loop, coro, True, self.settings.context.copy())
            finally:
                self.eager = False
            if not self.finished:
                # The app started a response, then went to wait for something else: the
                # head goes out now rather than with a body part that may be a while.
                self.flush_head()
        else:
            self.task = start_task(self.host.loop, coro, False, self.settings.context.copy())

    # -- the application's view ------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        queue = self.queue
        if not queue:
            last = self.last
            if last is not None and last["type"] in _DISCONNECTS:
                return last
            actions = self.machine.app_wants_body(self.cycle)
            if actions:
                self.host.run(actions)
            while not queue:
                waiter = self.host.loop.create_future()
                if self.waiter is None:  # the usual case: one task receives
                    self.waiter = waiter
                    try:
                        await waiter
                    finally:
                        self.waiter = None
                else:
                    await self._wait_beside(waiter)
                if not queue:
                    last = self.last  # another receive() took the disconnect
                    if last is not None and last["type"] in _DISCONNECTS:
                        return last
        message = queue.pop(0)
        self.last = message
        data = message.get("body") or message.get("bytes") or message.get("text")
        if data:
            self.queued_bytes -= len(data)
        elif message["type"] in _DISCONNECTS:
            self.machine.app_got_disconnect(self.cycle)
        host = self.host
        if host.reading_paused:
            settings = self.settings
            if self.queued_bytes < settings.read_low_water and len(queue) < settings.queue_high_water:
                host.resume_input()
        return message

    async def _wait_beside(self, waiter: asyncio.Future[None]) -> None:
        """Another task of the app waits in receive() too (a disconnect watcher beside a
        reader): each is woken by deliver()."""
        more = self.more_waiters
        if more is None:
            more = self.more_waiters = []
        more.append(waiter)
        try:
            await waiter
        finally:
            more.remove(waiter)

    async def send(self, message: dict[str, Any]) -> None:
        try:
            actions = self.machine.app_send(self.cycle, message)
        except ASGIProtocolError as exc:
            self._misused(exc)
            raise
        host = self.host
        mtype = message.get("type")  # the machine accepted it: a dict with a type
        metrics = self.settings.metrics
        if metrics is not None and mtype == "websocket.send":
            metrics.message_out(message)
        if actions:
            host.run(actions)
        elif mtype == "http.response.start":
            # The head is held back to go out with the first body part; if the app waits
            # for something else first, it goes out when its first step ends (start()) or
            # on the next loop turn.
            if not self.eager:
                host.flush_head_soon(self)
            if self.started:
                self.status = message.get("status")
        if host.write_paused:
            await host.drain()
        if host.h2:
            machine, cycle = self.machine, self.cycle
            while machine.blocked(cycle):  # type: ignore[attr-defined]
                await host.peer_spoke()
        if mtype == "http.response.pathsend":
            await self._send_file(message["path"])

    async def _send_file(self, path: str) -> None:
        """``http.response.pathsend``, accepted by the table: the file's bytes go out as
        body parts through ``send()`` (its checks, its waiting on a full buffer), read off
        the event loop; the last part completes the response. A file that cannot be read
        fails the app's ``send()`` with the OSError."""
        loop = self.host.loop
        self.sending_file = True
        file = None
        try:
            file = await loop.run_in_executor(None, open, path, "rb")
            chunk = await loop.run_in_executor(None, file.read, PATHSEND_CHUNK)
            while True:
                following = await loop.run_in_executor(None, file.read, PATHSEND_CHUNK) if chunk else b""
                more = bool(following)
                await self.send({"type": "http.response.body", "body": chunk, "more_body": more})
                self.sending_file = False  # the head is out
                if not more:
                    return
                chunk = following
        finally:
            self.sending_file = False
            if file is not None:
                file.close()

    def flush_head(self) -> None:
        if not self.host.lost and not self.sending_file:
            try:
                actions = self.machine.flush_head(self.cycle)
            except ASGIProtocolError as exc:  # the head itself is invalid
                self._misused(exc)
                return
            if actions:
                self.host.run(actions)

    def _misused(self, exc: ASGIProtocolError) -> None:
        """Each refused message is logged once (not again if the app lets the error end
        it) and goes to the machine, which decides what the peer gets (``app_misused``:
        nothing once an HTTP response head stands, else 500 or close 1011)."""
        self.failure = exc
        error_log.error("ASGI protocol error: %s", exc)
        self.host.run(self.machine.app_misused(self.cycle))

    # -- the server's side -----------------------------------------------------------
    def deliver(self, message: dict[str, Any]) -> None:
        """Queue a message for ``receive()``. Reading from the socket pauses while the
        queue holds more than ``read_high_water`` bytes or ``queue_high_water`` messages,
        so an app that does not receive bounds what the server holds for it."""
        self.queue.append(message)
        data = message.get("body") or message.get("bytes") or message.get("text")
        if data:
            self.queued_bytes += len(data)
        settings = self.settings
        if self.queued_bytes > settings.read_high_water or len(self.queue) > settings.queue_high_water:
            self.host.pause_input()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.more_waiters:
            for waiter in self.more_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def connection_gone(self) -> None:
        """The connection is gone: the app has ``app_close_timeout`` to return."""
        if self.finished or self.scheduled is not None:
            return
        self.disconnected_at = now = self.host.loop.time()
        self.scheduled = {}
        self.host.timers.schedule(self, "app_close", now + self.settings.app_close_timeout)  # type: ignore[arg-type]

    def timer_due(self, name: str, now: float) -> None:
        self.cancel_overdue()

    def cancel_overdue(self) -> None:
        """``app_close_timeout`` passed since the disconnect: cancel the Task, once."""
        if self.finished or self.task is None or self.cancelled_at is not None:
            return
        self.cancelled_at = self.host.loop.time()
        if self.settings.metrics is not None:
            self.settings.metrics.cancelled += 1
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
        app = self.settings.app_name
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
            result: Any = await self.settings.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
            if result is not None:
                error_log.warning("ASGI app returned a value (%r); ASGI apps return None (%s)", result, self.describe())
        except asyncio.CancelledError as e:
            exc = e
        except ClientDisconnected as e:
            exc = e
            error_log.info("%s stopped: %s", self.describe(), e)
        except BaseException as e:
            exc = e
            gone = disconnected_cause(e)
            if gone is not None:
                # A framework turned send()'s ClientDisconnected into its own exception
                # (Starlette's ClientDisconnect): the client left, the app has no bug.
                error_log.info("%s stopped: %s (raised as %s)", self.describe(), gone, type(e).__name__)
            elif e is not self.failure:
                error_log.error("Exception in %s", self.describe(), exc_info=e)
        finally:
            self.finished = True
            if self.scheduled:
                self.host.timers.forget(self)  # type: ignore[arg-type]
            self.host.app_finished(self, exc)
