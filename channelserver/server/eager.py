"""Start an app instance's Task, eagerly where asyncio supports it.

Every step of an app instance, from its first line to its return, runs inside one asyncio
Task, so ``asyncio.current_task()``, ``asyncio.timeout()``, anyio task groups and context
variables behave in the app exactly as in any asyncio program.

On Python 3.12+ the Task is created with asyncio's own ``eager_start``: its first step runs
at once, inside ``data_received``, as that Task (asyncio makes it the current task for the
step), and a request whose app never waits is answered without a loop iteration. On 3.10
and 3.11 asyncio has no eager start, and the Task's first step runs on the next loop turn.
No coroutine is ever stepped by hand.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

__all__ = ["EAGER", "start_task"]

#: Whether this Python starts Tasks eagerly (``eager_start``, Python 3.12+).
EAGER = sys.version_info >= (3, 12)


def start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], eager: bool) -> asyncio.Task[None]:
    """The Task that runs ``coro``. With ``eager`` (honoured on Python 3.12+) its first step
    has run when this returns, and the Task may be done already."""
    if eager and EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)
