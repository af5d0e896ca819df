"""The lifespan driver (``server.lifespan.Lifespan``) with fake apps, on a real event loop.

Startup answered, failed, not supported (``auto``) or fatal (``on``); shutdown answered,
failed, not answered in time (cancelled, on a fake clock), and not ending even then
(abandoned). Misuse raises ``ASGIProtocolError`` inside the app's ``send()`` with the
table's text, logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from channelserver.errors import ASGIProtocolError, StartupError
from channelserver.server.lifespan import Lifespan
from channelserver.server.tasks import CANCEL_GRACE
from channelserver.types import Receive, Scope, Send

from .fakes import FakeClockLoop, run, turns

LOGGER = "channelserver.error"


def lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and (level is None or r.levelno == level)]


class Recorder:
    """An app body with a record of what it received, and of how it ended."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.scope: Scope | None = None
        self.errors: list[BaseException] = []
        self.ended = asyncio.Event()

    async def receive(self, receive: Receive) -> dict[str, Any]:
        message: dict[str, Any] = await receive()
        self.received.append(message)
        return message

    async def send(self, send: Send, message: Any) -> None:
        """Send, keeping what ``send()`` raised (and raising it on)."""
        try:
            await send(message)
        except BaseException as exc:
            self.errors.append(exc)
            raise


def answering(rec: Recorder, shutdown: dict[str, Any] | None = None) -> Any:
    """A well-behaved app: completes startup (putting a value in the state), answers
    shutdown with ``shutdown`` (complete by default), returns."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        rec.scope = scope
        assert (await rec.receive(receive))["type"] == "lifespan.startup"
        scope["state"]["db"] = "up"
        await rec.send(send, {"type": "lifespan.startup.complete"})
        assert (await rec.receive(receive))["type"] == "lifespan.shutdown"
        await rec.send(send, shutdown or {"type": "lifespan.shutdown.complete"})
        rec.ended.set()

    return app


# -- startup ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_and_shutdown_complete(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()

    async def main() -> None:
        lifespan = Lifespan(answering(rec), mode, asyncio.get_running_loop())
        state = await lifespan.startup()
        assert state == {"db": "up"}
        assert rec.scope is not None
        assert rec.scope["state"] is state, "the app's state is the one copied into every scope"
        assert rec.scope["type"] == "lifespan"
        assert rec.scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
        await lifespan.shutdown(5.0)
        assert rec.ended.is_set()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert [m["type"] for m in rec.received] == ["lifespan.startup", "lifespan.shutdown"]
    assert rec.errors == []
    assert lines(caplog) == []


@pytest.mark.parametrize("mode", ["auto", "on"])
@pytest.mark.parametrize(
    ("message", "said"),
    [
        ({"type": "lifespan.startup.failed", "message": "database unreachable"}, "database unreachable"),
        ({"type": "lifespan.startup.failed"}, "lifespan.startup.failed"),
    ],
)
def test_startup_failed_is_a_startup_error(mode: str, message: dict[str, Any], said: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(message)
        await receive()  # would wait for a shutdown that does not come

    async def main() -> None:
        lifespan = Lifespan(app, mode, asyncio.get_running_loop())
        with pytest.raises(StartupError) as info:
            await lifespan.startup()
        assert str(info.value) == f"lifespan startup failed: {said}"

    run(main())


async def rejecting(scope: Scope, receive: Receive, send: Send) -> None:
    """What Channels' ProtocolTypeRouter does with a lifespan scope."""
    raise ValueError("No application configured for scope type 'lifespan'")


def test_auto_goes_on_quietly_when_the_app_raises_before_answering(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        lifespan = Lifespan(rejecting, "auto", asyncio.get_running_loop())
        assert await lifespan.startup() is None
        await lifespan.shutdown(5.0)  # nothing to shut down: no lifespan.shutdown sent
        assert lifespan.receive_queue.get_nowait() == {"type": "lifespan.startup"}  # never received
        assert lifespan.receive_queue.empty()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert lines(caplog, logging.DEBUG) == [
        "ASGI lifespan not supported by the app (No application configured for scope type 'lifespan'); "
        "going on without it"
    ]
    assert lines(caplog) == lines(caplog, logging.DEBUG), "no warning, no error"


def test_on_makes_a_raise_before_answering_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        lifespan = Lifespan(rejecting, "on", asyncio.get_running_loop())
        with pytest.raises(StartupError) as info:
            await lifespan.startup()
        assert str(info.value) == (
            "lifespan startup failed: ValueError: No application configured for scope type 'lifespan'"
        )

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert lines(caplog) == ["Exception in lifespan startup"]
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_an_app_that_returns_without_answering_has_no_lifespan(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await rec.receive(receive)

    async def main() -> None:
        lifespan = Lifespan(app, mode, asyncio.get_running_loop())
        assert await lifespan.startup() is None
        await lifespan.shutdown(5.0)

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert [m["type"] for m in rec.received] == ["lifespan.startup"], "no shutdown sent"
    assert lines(caplog) == []


def test_off_never_calls_the_app() -> None:
    called: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    async def main() -> None:
        lifespan = Lifespan(app, "off", asyncio.get_running_loop())
        assert await lifespan.startup() is None
        await lifespan.shutdown(5.0)
        await turns()

    run(main())
    assert called == []


# -- shutdown -----------------------------------------------------------------------------


def test_shutdown_failed_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()

    async def main() -> None:
        lifespan = Lifespan(
            answering(rec, {"type": "lifespan.shutdown.failed", "message": "disk full"}),
            "auto",
            asyncio.get_running_loop(),
        )
        await lifespan.startup()
        await lifespan.shutdown(5.0)

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert lines(caplog, logging.ERROR) == ["lifespan shutdown failed: disk full"]
    assert lines(caplog) == lines(caplog, logging.ERROR)


def test_an_app_that_raises_at_shutdown_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("connection pool already closed")

    async def main() -> None:
        lifespan = Lifespan(app, "auto", asyncio.get_running_loop())
        await lifespan.startup()
        await lifespan.shutdown(5.0)

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    assert lines(caplog) == [
        "Exception in lifespan",
        "lifespan shutdown failed: RuntimeError: connection pool already closed",
    ]


async def advance(loop: FakeClockLoop, seconds: float, done: Callable[[], bool]) -> None:
    """Move the fake clock by ``seconds``, then let the loop run until ``done()``."""
    loop.advance(seconds)
    for _ in range(100):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("not done after 100 loop turns")


def test_shutdown_not_answered_in_time_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeClockLoop()
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await asyncio.Event().wait()  # a hook that never ends
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        lifespan = Lifespan(app, "auto", loop)
        await lifespan.startup()
        shutdown = asyncio.ensure_future(lifespan.shutdown(10.0))
        await turns()
        loop.advance(9.9)
        await turns()
        assert not shutdown.done() and not cancelled.is_set(), "cancelled before the timeout"
        await advance(loop, 0.2, shutdown.done)
        assert cancelled.is_set()
        assert lifespan.task is not None and lifespan.task.done()
        await shutdown

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main(), loop)
    (line,) = lines(caplog)
    assert line.startswith("lifespan shutdown not answered within 10.0s; cancelled it (awaiting ")
    assert __file__ in line and "in app)" in line, "names the line the app waits on"


def test_an_app_that_swallows_its_cancellation_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeClockLoop()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # goes on awaiting: the deaf hook

    async def main() -> None:
        lifespan = Lifespan(app, "auto", loop)
        await lifespan.startup()
        shutdown = asyncio.ensure_future(lifespan.shutdown(10.0))
        await turns()
        await advance(loop, 10.0, lambda: "cancelled it" in " ".join(lines(caplog)))
        assert not shutdown.done(), "the cancelled app gets CANCEL_GRACE"
        await advance(loop, CANCEL_GRACE, shutdown.done)
        await shutdown
        assert lifespan.task is not None and not lifespan.task.done(), "exited without it"
        release.set()
        await lifespan.task

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main(), loop)
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("lifespan shutdown not answered within 10.0s; cancelled it")
    assert warnings[1].startswith(
        "Abandoned the lifespan app instance: still running 1s after it was cancelled (awaiting "
    )
    assert "in app); exiting without it" in warnings[1]


# -- misuse -------------------------------------------------------------------------------

MISUSE_IN_STARTUP = (
    "lifespan.shutdown.complete not allowed in state STARTUP; "
    "expected lifespan.startup.complete or lifespan.startup.failed (lifespan)"
)


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_misuse_raises_in_send_is_logged_once_and_fails_startup(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Once a message of the app was refused, an app that lets the error end it is not
    "without lifespan": startup failed, in ``auto`` too."""
    rec = Recorder()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await rec.send(send, {"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        lifespan = Lifespan(app, mode, asyncio.get_running_loop())
        with pytest.raises(StartupError) as info:
            await lifespan.startup()
        assert str(info.value) == f"lifespan startup failed: ASGIProtocolError: {MISUSE_IN_STARTUP}"

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    (error,) = rec.errors
    assert type(error) is ASGIProtocolError
    assert str(error) == MISUSE_IN_STARTUP
    assert lines(caplog) == [f"ASGI protocol error: {MISUSE_IN_STARTUP}"], "logged once, no traceback after it"


def test_misuse_in_the_wrong_state_leaves_the_cycle_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    """startup.complete twice, shutdown.complete before shutdown was sent, a message that is
    not a dict: each raises in ``send()`` and is logged once; an app that catches the
    error goes on, and its later answers count."""
    rec = Recorder()
    wrong = [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
        "lifespan.shutdown.complete",
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        for message in wrong:
            with pytest.raises(ASGIProtocolError):
                await rec.send(send, message)
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        rec.ended.set()

    async def main() -> None:
        lifespan = Lifespan(app, "auto", asyncio.get_running_loop())
        assert await lifespan.startup() == {}
        await lifespan.shutdown(5.0)
        assert rec.ended.is_set()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        run(main())
    expected = [
        "lifespan.startup.complete not allowed in state STARTED; expected no further message (lifespan)",
        "lifespan.shutdown.complete not allowed in state STARTED; expected no further message (lifespan)",
        "ASGI message must be a dict with a 'type' key, got 'lifespan.shutdown.complete' (lifespan)",
    ]
    assert [str(e) for e in rec.errors] == expected
    assert all(type(e) is ASGIProtocolError for e in rec.errors)
    assert lines(caplog) == [f"ASGI protocol error: {text}" for text in expected]
