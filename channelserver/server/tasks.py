"""How the server starts the Tasks it runs, and how it lets go of those that will not end.

Starting: every step of an app instance, from its first line to its return, runs inside one
asyncio Task, so ``asyncio.current_task()``, ``asyncio.timeout()``, anyio task groups and
context variables behave in the app exactly as in any asyncio program. On Python 3.12+ the
Task is created with asyncio's own ``eager_start``: its first step runs at once, inside
``data_received``, as that Task (asyncio makes it the current task for the step), and a
request whose app never waits is answered without a loop iteration. On 3.10 and 3.11
asyncio has no eager start, and the Task's first step runs on the next loop turn. No
coroutine is ever stepped by hand.

Ending: a Task that was cancelled gets :data:`CANCEL_GRACE` seconds to finish. One that
catches the ``CancelledError`` and goes on awaiting is then abandoned: one WARNING line
names it and the line it awaits, and the server exits without it. A thread cannot be
cancelled at all: one still busy when the process exits (a sync view stuck in
``sync_to_async``) would keep the interpreter waiting for it, so :func:`exit_watchdog`
ends the process ``CANCEL_GRACE`` later, naming the thread. Nothing an app does can keep
the process alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any

__all__ = ["CANCEL_GRACE", "EAGER", "abandon", "awaiting", "close_loop", "exit_watchdog", "start_task"]

log = logging.getLogger("channelserver.error")

#: Whether this Python starts Tasks eagerly (``eager_start``, Python 3.12+).
EAGER = sys.version_info >= (3, 12)

#: Seconds a cancelled Task has to finish before it is abandoned.
CANCEL_GRACE = 1.0

#: Frames skipped when telling where an app waits: asyncio's and the server's own.
_SKIPPED_DIRS = (os.path.dirname(asyncio.__file__), os.path.dirname(__file__))
#: Frames skipped when telling where a thread is: the worker loop of an executor.
_THREADING_DIRS = (os.path.dirname(threading.__file__) + os.sep + "concurrent", threading.__file__)
_abandoned: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def start_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, None],
    eager: bool,
    context: contextvars.Context,
) -> asyncio.Task[None]:
    """The Task that runs ``coro`` in ``context`` (a fresh copy of the server's, so one
    instance never sees another's context variables). With ``eager`` (honoured on Python
    3.12+, unless the loop has a task factory, which an eager start would bypass) its first
    step has run when this returns, and the Task may be done already."""
    if eager and EAGER and loop.get_task_factory() is None:
        return asyncio.Task(coro, loop=loop, eager_start=True, context=context)  # type: ignore[call-arg,unused-ignore]
    if sys.version_info >= (3, 11):
        return loop.create_task(coro, context=context)
    return context.run(loop.create_task, coro)  # the Task copies the context it is made in


def awaiting(coro: Any) -> tuple[str, str | None]:
    """Where the innermost coroutine awaited by ``coro`` is suspended, as
    ``file:line in func``, and the class of the innermost method on the way whose object
    holds a ``scope`` (the consumer, for a Channels app). asyncio's own frames (a queue's
    get, a sleep) and the server's (``receive()``) are skipped: the application's line
    that called them says more."""
    where, owner = "unknown", None
    seen = 0
    while coro is not None and seen < 100:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and not frame.f_code.co_filename.startswith(_SKIPPED_DIRS):
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            this = frame.f_locals.get("self")
            if this is not None and hasattr(this, "scope"):
                owner = type(this).__qualname__
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return where, owner


def abandon(task: asyncio.Future[Any], what: str, where: str) -> None:
    """Let go of ``task``, which ignored its cancellation: one WARNING line, once."""
    if task.done() or task in _abandoned:
        return
    _abandoned.add(task)
    # asyncio would log "Task was destroyed but it is pending!" at exit: this line says it.
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    log.warning(
        "Abandoned %s: still running %gs after it was cancelled (awaiting %s); exiting without it",
        what,
        CANCEL_GRACE,
        where,
    )


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on ``loop``, give it :data:`CANCEL_GRACE` (async
    generators' clean-up included), abandon what is left, close the loop. Bounded whatever
    the tasks do."""
    try:
        deadline = loop.time() + CANCEL_GRACE
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done() and t not in _abandoned]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_GRACE))
        for task in tasks:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", None) or task.get_name()
            if not task.done():
                abandon(task, f"task {name}", awaiting(coro)[0])
            elif not task.cancelled() and task.exception() is not None:
                # retrieved here, so that asyncio does not report it at garbage collection
                log.error("Exception in task %s as it was cancelled at shutdown", name, exc_info=task.exception())
        rest = max(deadline - loop.time(), 0.1)
        loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), rest))
    finally:
        loop.close()


async def _bounded(coro: Coroutine[Any, Any, None], timeout: float) -> None:
    try:
        await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        log.warning("Async generators still open at the end of the shutdown; exiting without them")


def exit_watchdog(code: int) -> None:
    """Called by a process's entry point as it returns ``code``: if the interpreter's exit
    still waits on a thread :data:`CANCEL_GRACE` from now (Python joins non-daemon threads,
    and the executors' workers, before it runs the atexit handlers), log which thread and
    where it is, and exit with ``code`` without it. With no such thread it does nothing:
    atexit handlers (an error reporter flushing, say) run to their end."""

    def watch() -> None:
        time.sleep(CANCEL_GRACE)
        frames = sys._current_frames()
        stuck = []
        for thread in threading.enumerate():
            if thread is threading.current_thread() or thread is threading.main_thread() or thread.daemon:
                continue
            frame = frames.get(thread.ident or -1)
            where = "unknown"
            while frame is not None:
                if not frame.f_code.co_filename.startswith(_THREADING_DIRS):
                    where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
                    break
                frame = frame.f_back
            stuck.append(f"{thread.name} (at {where})")
        if not stuck:
            return  # no thread holds the exit: it is in the atexit handlers, which may take their time
        log.warning(
            "Exit still waiting %gs later on thread(s) an app left busy: %s; exiting without them",
            CANCEL_GRACE,
            ", ".join(stuck),
        )
        logger: logging.Logger | None = log
        while logger is not None:  # the handlers on the way to the root, where the line went
            for handler in logger.handlers:
                handler.flush()
            logger = logger.parent if logger.propagate else None
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=watch, name="channelserver-exit-watchdog", daemon=True).start()
