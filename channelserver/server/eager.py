"""Start a coroutine eagerly: run its first step now, make a Task only if it suspends.

Most HTTP requests to a simple app never wait: ``receive()`` has the body, ``send()``
writes at once. Running the first step inside ``data_received`` saves the Task, a
``call_soon`` and an event-loop iteration per request. Python 3.12+ has this built in
(``eager_start``); on 3.11 a small driver resumes the already-started coroutine inside a
Task that awaits whatever the coroutine was waiting for, exactly as a Task would. Each
instance runs in its own copy of the context, as a Task's coroutine does, so context
variables never leak between requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_eagerly"]


@types.coroutine
def _yield_once() -> Any:
    yield


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    while True:
        throw: BaseException | None = None
        try:
            if yielded is None:
                await _yield_once()
            else:
                # The coroutine's own await marked the future as blocking; no Task saw it,
                # so clear the mark for the await below to hand it to our Task.
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError as exc:
            # Our Task was cancelled. If the future the coroutine waits on was cancelled
            # with it, the coroutine learns it from that future; if not, pass it in.
            if yielded is None or not yielded.cancelled():
                throw = exc
        except BaseException:
            pass  # the coroutine reads the future's exception itself when resumed
        try:
            yielded = coro.throw(throw) if throw is not None else coro.send(None)
        except StopIteration:
            return


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
    """Run ``coro`` until it first suspends. None if it finished; else the Task that
    carries on."""
    if sys.version_info >= (3, 12):
        task = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        return None if task.done() else task
    if sys.version_info < (3, 11):  # pragma: no cover - no Task(context=) to carry on in
        return loop.create_task(coro)
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_resume(coro, yielded), context=context)
