"""The ``channelserver.drain`` extension (``server.drain``): ``ConnectionDrain`` and ``Hold``.

What its docstring promises the app and the connection: a connection with no hold when
the drain begins is closed at once; while any hold is active it stays open, and it is
closed (``on_idle``, once) when the last hold ends; a hold is a ``with`` or ``async with``
context manager, and releasing it twice is harmless; ``started`` is the event the server
sets when the drain begins; ``graceful_timeout`` is the bound the app is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from channelserver.server.drain import DRAIN_EXTENSION, ConnectionDrain, Hold


class Idle:
    """The connection's ``on_idle``: counts the calls (the 1012 closes it would send)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def new_drain(graceful_timeout: float = 30.0) -> tuple[ConnectionDrain, Idle]:
    idle = Idle()
    return ConnectionDrain(asyncio.Event(), graceful_timeout, idle), idle


def run(coro: Coroutine[Any, Any, None]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coro, 2.0))
    finally:
        loop.close()


def test_the_extension_name() -> None:
    assert DRAIN_EXTENSION == "channelserver.drain"


def test_no_hold_when_the_drain_begins_closes_at_once() -> None:
    drain, idle = new_drain()
    assert drain.begin() is True
    assert idle.calls == 0, "the caller closes it now; on_idle is for a close later"


def test_a_hold_released_before_the_drain_does_not_delay_it() -> None:
    drain, idle = new_drain()
    with drain.hold():
        pass
    assert drain.begin() is True
    assert idle.calls == 0


def test_holds_keep_it_open_until_the_last_is_released() -> None:
    drain, idle = new_drain()
    first, second = drain.hold(), drain.hold()
    assert drain.begin() is False
    first.release()
    assert idle.calls == 0, "one hold is still active"
    second.release()
    assert idle.calls == 1


def test_a_sync_with_holds_for_its_body() -> None:
    drain, idle = new_drain()
    with drain.hold() as hold:
        assert isinstance(hold, Hold)
        assert drain.begin() is False
        assert idle.calls == 0
    assert idle.calls == 1


def test_an_async_with_holds_for_its_body() -> None:
    drain, idle = new_drain()

    async def main() -> None:
        async with drain.hold() as hold:
            assert isinstance(hold, Hold)
            assert drain.begin() is False
            await asyncio.sleep(0)
            assert idle.calls == 0
        assert idle.calls == 1

    run(main())


@pytest.mark.parametrize("kind", ["with", "async with"])
def test_an_exception_in_the_body_releases_the_hold_and_goes_on(kind: str) -> None:
    drain, idle = new_drain()

    async def main() -> None:
        hold = drain.hold()
        assert drain.begin() is False
        with pytest.raises(ValueError, match="subscription broke"):
            if kind == "with":
                with hold:
                    raise ValueError("subscription broke")
            else:
                async with hold:
                    raise ValueError("subscription broke")

    run(main())
    assert idle.calls == 1


def test_releasing_twice_is_harmless() -> None:
    drain, idle = new_drain()
    twice, other = drain.hold(), drain.hold()
    assert drain.begin() is False
    twice.release()
    twice.release()
    with twice:  # and its `with` exit, a third release
        pass
    assert idle.calls == 0, "one hold released three times must not count as the other's release"
    other.release()
    other.release()
    assert idle.calls == 1


def test_the_connection_is_closed_once() -> None:
    """After the last hold ended, a hold taken and released later does not close it again."""
    drain, idle = new_drain()
    hold = drain.hold()
    assert drain.begin() is False
    hold.release()
    assert idle.calls == 1
    with drain.hold():
        pass
    assert idle.calls == 1


def test_a_hold_taken_while_the_drain_waits_counts_too() -> None:
    drain, idle = new_drain()
    first = drain.hold()
    assert drain.begin() is False
    late = drain.hold()
    first.release()
    assert idle.calls == 0
    late.release()
    assert idle.calls == 1


def test_releases_without_a_drain_never_close() -> None:
    drain, idle = new_drain()
    for _ in range(3):
        with drain.hold():
            pass
    assert idle.calls == 0


def test_the_extension_tells_the_app_started_hold_and_the_bound() -> None:
    drain, idle = new_drain(graceful_timeout=12.5)
    extension = drain.extension()
    assert set(extension) == {"started", "hold", "graceful_timeout"}
    assert extension["graceful_timeout"] == 12.5
    assert extension["started"] is drain.started
    hold = extension["hold"]()
    assert isinstance(hold, Hold)
    assert drain.begin() is False, "a hold taken through the extension holds the connection"
    hold.release()
    assert idle.calls == 1


def test_started_wakes_a_waiting_app() -> None:
    """``await started.wait()`` returns when the server begins to drain; one event is
    shared by every connection of the server."""
    started = asyncio.Event()
    drains = [ConnectionDrain(started, 30.0, Idle()) for _ in range(2)]
    woken: list[int] = []

    async def app(n: int) -> None:
        await drains[n].extension()["started"].wait()
        woken.append(n)

    async def main() -> None:
        apps = [asyncio.ensure_future(app(n)) for n in range(2)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert woken == [], "not before the drain begins"
        started.set()
        await asyncio.gather(*apps)

    run(main())
    assert sorted(woken) == [0, 1]
