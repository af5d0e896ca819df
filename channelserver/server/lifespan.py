"""The ASGI lifespan protocol (spec 2.0 with ``state``).

``auto``: an app that raises before it answers ``lifespan.startup`` (Django's and Channels'
routers reject the scope type) is taken not to support lifespan, logged at debug level,
and the server goes on. ``on``: that is a start-up failure. ``off``: never called.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import StartupError
from ..types import ASGIApp
from .tasks import CANCEL_GRACE, abandon, awaiting

__all__ = ["Lifespan"]

log = logging.getLogger("channelserver.error")


class Lifespan:
    def __init__(self, app: ASGIApp, mode: str, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.startup_done = asyncio.Event()
        self.shutdown_done = asyncio.Event()
        self.failed: str | None = None
        self.unsupported = False
        self.task: asyncio.Task[None] | None = None
        self.answered = False

    async def startup(self) -> dict[str, Any] | None:
        """Run startup. Returns the state to copy into every scope (None when unused)."""
        if self.mode == "off":
            return None
        self.task = self.loop.create_task(self._main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_done.wait()
        if self.failed is not None:
            raise StartupError(f"lifespan startup failed: {self.failed}")
        if self.unsupported:
            return None
        return self.state

    async def shutdown(self, timeout: float) -> None:
        """Send lifespan.shutdown and wait for the answer, up to ``timeout``; an app that
        does not answer is cancelled, and abandoned if it is still running ``CANCEL_GRACE``
        later, so it cannot hang the exit."""
        if self.mode == "off" or self.unsupported or self.task is None or self.task.done():
            return
        await self.receive_queue.put({"type": "lifespan.shutdown"})
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
        if self.failed is not None:
            log.error("lifespan shutdown failed: %s", self.failed)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive_queue.get, self._send)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            if not self.startup_done.is_set() and not self.answered:
                if self.mode == "auto":
                    self.unsupported = True
                    log.debug("ASGI lifespan not supported by the app (%s); going on without it", exc)
                else:
                    self.failed = f"{type(exc).__name__}: {exc}"
                    log.error("Exception in lifespan startup", exc_info=exc)
            elif not self.shutdown_done.is_set():
                self.failed = f"{type(exc).__name__}: {exc}"
                log.error("Exception in lifespan", exc_info=exc)
        else:
            if not self.startup_done.is_set():
                # Returned without answering: nothing to run at startup or shutdown.
                self.unsupported = True
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def _send(self, message: dict[str, Any]) -> None:
        mtype = message.get("type")
        self.answered = True
        if mtype == "lifespan.startup.complete":
            self.startup_done.set()
        elif mtype == "lifespan.startup.failed":
            self.failed = message.get("message", "") or "lifespan.startup.failed"
            self.startup_done.set()
        elif mtype == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif mtype == "lifespan.shutdown.failed":
            self.failed = message.get("message", "") or "lifespan.shutdown.failed"
            self.shutdown_done.set()
        else:
            raise RuntimeError(f"{mtype} is not a lifespan message")
