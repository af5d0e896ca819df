"""``server.eager.start_eagerly``: a coroutine's first step runs now; if it suspends, it
carries on exactly as a Task would (results, exceptions, cancellation, its own context)."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest

from channelserver.server.eager import start_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")

#: Python 3.10 has no Task(context=): start_eagerly only creates the Task there, and the
#: first step runs on the next loop turn like any Task's.
eager_only = pytest.mark.skipif(sys.version_info < (3, 11), reason="eager start needs Python 3.11+")


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@eager_only
def test_a_coroutine_that_never_waits_finishes_in_the_first_step() -> None:
    async def scenario() -> None:
        steps: list[str] = []

        async def coro() -> None:
            steps.append("ran")

        assert start_eagerly(asyncio.get_running_loop(), coro()) is None
        assert steps == ["ran"]

    run(scenario())


@eager_only
def test_a_coroutine_that_waits_gets_the_result_it_awaited() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[int] = loop.create_future()
        seen: list[Any] = []

        async def coro() -> None:
            seen.append("first step")
            seen.append(await first)
            await asyncio.sleep(0)
            second: asyncio.Future[str] = loop.create_future()
            loop.call_soon(second.set_result, "second")
            seen.append(await second)

        task = start_eagerly(loop, coro())
        assert seen == ["first step"] and task is not None
        loop.call_soon(first.set_result, 1)
        await asyncio.wait_for(task, 2)
        return seen

    assert run(scenario()) == ["first step", 1, "second"]


def test_an_exception_set_on_the_awaited_future_is_raised_in_the_coroutine() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        seen: list[str] = []

        async def coro() -> None:
            try:
                await fut
            except ValueError as exc:
                seen.append(str(exc))

        task = start_eagerly(loop, coro())
        assert task is not None
        fut.set_exception(ValueError("from the future"))
        await asyncio.wait_for(task, 2)
        return seen

    assert run(scenario()) == ["from the future"]


def test_cancelling_the_task_cancels_the_coroutine() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        async def coro() -> None:
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        task = start_eagerly(loop, coro())
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    assert run(scenario()) == ["cancelled"]


def test_each_coroutine_has_its_own_context() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[None] = loop.create_future()

        async def coro() -> None:
            VAR.set("inside")
            await gate
            assert VAR.get() == "inside"

        task = start_eagerly(loop, coro())
        assert VAR.get() == "unset", "the context variable leaked out of the instance"
        gate.set_result(None)
        assert task is not None
        await asyncio.wait_for(task, 2)

    run(scenario())
