"""The ASGI lifespan protocol (spec 2.0 with ``state``), driven by
:class:`~channelserver.protocol.asgi_lifespan.LifespanCycle`, whose table says what the
app may send and when; this module runs the app's Task, waits for its answers and logs.

``auto``: an app that raises before it answers ``lifespan.startup`` (Django's and Channels'
routers reject the scope type) is taken not to support lifespan, logged at debug level,
and the server goes on. ``on``: that is a start-up failure. ``off``: never called.

A message the table does not allow raises :class:`ASGIProtocolError` inside the app's
``send()``, logged once (``ASGI protocol error: lifespan.shutdown.complete not allowed in
state STARTED; expected no further message (lifespan)``), as for HTTP and WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ASGIProtocolError, StartupError
from ..protocol.asgi_lifespan import LifespanCycle, State
from ..types import ASGIApp
from .tasks import CANCEL_GRACE, abandon, awaiting

__all__ = ["Lifespan"]

log = logging.getLogger("channelserver.error")


class Lifespan:
    def __init__(self, app: ASGIApp, mode: str, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.loop = loop
        self.cycle = LifespanCycle()
        #: The scope's ``state``, copied into every HTTP and WebSocket scope.
        self.state: dict[str, Any] = {}
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: Set when the cycle leaves STARTUP, and when the app ends.
        self.startup_done = asyncio.Event()
        #: Set when the cycle leaves SHUTDOWN, and when the app ends.
        self.shutdown_done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> dict[str, Any] | None:
        """Run startup. Returns the state to copy into every scope (None when unused)."""
        if self.mode == "off":
            return None
        self.receive_queue.put_nowait(self.cycle.send_startup())
        self.task = self.loop.create_task(self._main())
        await self.startup_done.wait()
        cycle = self.cycle
        if cycle.state is State.STARTED:
            return self.state
        if cycle.state is State.FAILED or (
            cycle.state is State.UNSUPPORTED and self.mode == "on" and cycle.failure is not None
        ):
            raise StartupError(f"lifespan startup failed: {cycle.failure}")
        return None  # unsupported: the app returned (or, in auto, raised) without answering

    async def shutdown(self, timeout: float) -> None:
        """Send lifespan.shutdown and wait for the answer, up to ``timeout``; an app that
        does not answer is cancelled, and abandoned if it is still running ``CANCEL_GRACE``
        later, so it cannot hang the exit."""
        state = self.cycle.state
        if self.task is None or self.task.done() or state is not State.STARTED:
            return
        self.receive_queue.put_nowait(self.cycle.send_shutdown())
        try:
            await asyncio.wait_for(self.shutdown_done.wait(), timeout)
        except asyncio.TimeoutError:
            task = self.task
            where, _ = awaiting(task.get_coro())
            log.warning("lifespan shutdown not answered within %ss; cancelled it (awaiting %s)", timeout, where)
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
            abandon(task, "the lifespan app instance", awaiting(task.get_coro())[0])
            return
        if self.cycle.state is State.FAILED:
            log.error("lifespan shutdown failed: %s", self.cycle.failure)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive_queue.get, self._send)
        except asyncio.CancelledError:
            pass  # the server cancelled it (shutdown not answered in time)
        except BaseException as exc:
            state = self.cycle.app_ended(f"{type(exc).__name__}: {exc}")
            if state is State.UNSUPPORTED:
                if self.mode == "auto":
                    log.debug("ASGI lifespan not supported by the app (%s); going on without it", exc)
                else:
                    log.error("Exception in lifespan startup", exc_info=exc)
            elif state is State.FAILED and exc is not self.cycle.refused:  # a refusal is logged already
                log.error("Exception in lifespan", exc_info=exc)
        else:
            self.cycle.app_ended(None)
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            state = self.cycle.app_sent(message)
        except ASGIProtocolError as exc:
            log.error("ASGI protocol error: %s", exc)
            raise
        if state is not State.STARTUP:
            self.startup_done.set()
        if state is State.DONE or state is State.FAILED:
            self.shutdown_done.set()
