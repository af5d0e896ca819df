"""One app instance (``server.app.AppInstance``) against a fake host, with a real machine.

The host is :class:`FakeHost`: it records what the instance asks of its connection (the
actions it runs, pause and resume of reading, waits for the write buffer, head flushes,
the end of the app) and lets the test decide when the write buffer drains. The machine is
the real HTTP machine (``protocol.http11.HTTPConnection``) behind a :class:`Spy` that
records which of its inputs the instance called; a real h11 client reads what it wrote.
Timers run on ``FakeClockLoop``, so ``app_close_timeout`` passes when the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import h11
import pytest

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.events import Action, Deliver
from channelserver.server.app import AppInstance, InstanceSettings
from channelserver.server.tasks import EAGER
from channelserver.server.timers import TimerHeap

from ..protocol.helpers import HTTPPair, collect
from .fakes import FakeClockLoop, run, turns

LOGGER = "channelserver.error"
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")

App = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, Any]]


# -- the fakes -----------------------------------------------------------------------------


class Spy:
    """A machine that hands every call to a real one and records it (name, cycle-less args)."""

    def __init__(self, machine: Any) -> None:
        self._machine = machine
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._machine, name)
        if not callable(real):
            return real

        def call(*args: Any) -> Any:
            self.calls.append((name, args[1:]))  # args[0] is the cycle
            return real(*args)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeHost:
    """The :class:`~channelserver.server.app.Host` of one instance, recording what it is asked.

    ``log`` is the order of the calls: ``("run", [action kinds])``, ``"pause"``,
    ``"resume"``, ``"drain"``, ``"flush_head_soon"``, ``("finished", exc)``. ``Deliver``
    actions go to the instance (as the connection does); the others go to the ``HTTPPair``,
    whose client reads the bytes. ``drain()`` waits, while ``write_paused``, for the test
    to call :meth:`resume_writing`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pair: HTTPPair) -> None:
        self.loop = loop
        self.timers = TimerHeap(loop)
        self.pair = pair
        self.write_paused = False
        self.h2 = False
        self.reading_paused = False
        self.lost = False
        self.instance: AppInstance | None = None
        self.log: list[Any] = []
        self.actions: list[Action] = []
        self.finished: list[tuple[AppInstance, BaseException | None]] = []
        self.finished_event = asyncio.Event()
        self.drain_gate: asyncio.Future[None] | None = None

    def run(self, actions: list[Action]) -> None:
        self.log.append(("run", [type(a).__name__ for a in actions]))
        for action in actions:
            self.actions.append(action)
            if type(action) is Deliver and self.instance is not None and action.cycle is self.instance.cycle:
                self.instance.deliver(action.message)
            else:
                self.pair.run([action])

    def pause_input(self) -> None:
        self.log.append("pause")
        self.reading_paused = True

    def resume_input(self) -> None:
        self.log.append("resume")
        self.reading_paused = False

    async def drain(self) -> None:
        self.log.append("drain")
        if self.write_paused:
            self.drain_gate = gate = self.loop.create_future()
            await gate

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_gate is not None and not self.drain_gate.done():
            self.drain_gate.set_result(None)

    def flush_head_soon(self, instance: AppInstance) -> None:
        assert instance is self.instance
        self.log.append("flush_head_soon")

    def app_finished(self, instance: AppInstance, exc: BaseException | None) -> None:
        assert instance is self.instance
        self.log.append(("finished", exc))
        self.finished.append((instance, exc))
        self.finished_event.set()
        self.run(instance.machine.app_returned(instance.cycle, exc))

    # -- what the peer does, through the machine -------------------------------------------
    def feed(self, data: bytes) -> None:
        self.run(self.pair.machine.receive_data(data))

    def eof(self) -> None:
        self.lost = True
        self.run(self.pair.machine.eof())


def settings(app: Any = None, **values: Any) -> InstanceSettings:
    fields: dict[str, Any] = {
        "app": app,
        "app_name": "app",
        "context": contextvars.copy_context(),
        "read_high_water": 256 * 1024,
        "read_low_water": 64 * 1024,
        "queue_high_water": 64,
        "app_close_timeout": 5.0,
        "timed": False,
        **values,
    }
    return InstanceSettings(**fields)


def new_instance(
    app: Any = None,
    *,
    method: str = "GET",
    target: str = "/path",
    headers: list[tuple[str, str]] | None = None,
    **values: Any,
) -> tuple[AppInstance, FakeHost, Spy]:
    """An instance for the request the real client sends (its head only, no body yet:
    the body, if any, is the test's to feed)."""
    loop = asyncio.get_running_loop()
    pair = HTTPPair()
    host = FakeHost(loop, pair)
    pair.send(h11.Request(method=method, target=target, headers=[("Host", "example.com"), *(headers or [])]))
    assert len(pair.started) == 1
    spy = Spy(pair.machine)
    instance = AppInstance(host, spy, pair.cycle, pair.scope, settings(app, **values))
    host.instance = instance
    for message in pair.inbox():  # delivered with the head (a GET's empty body)
        instance.deliver(message)
    pair.inbox().clear()
    host.log.clear()
    return instance, host, spy


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def body(n: int, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": b"x" * n, "more_body": more}


# -- receive() -------------------------------------------------------------------------------


def test_receive_returns_queued_messages_in_order() -> None:
    async def scenario() -> None:
        instance, _host, _ = new_instance(method="POST", headers=[("Content-Length", "3")])
        for part in (b"a", b"b", b"c"):
            instance.deliver({"type": "http.request", "body": part, "more_body": part != b"c"})
        got = [await instance.receive() for _ in range(3)]
        assert [m["body"] for m in got] == [b"a", b"b", b"c"]
        assert instance.queued_bytes == 0

    run(scenario())


def test_receive_waits_on_one_future_woken_by_deliver() -> None:
    """An empty queue parks ``receive()`` on one future, not a polling loop; ``deliver()``
    resolves it, and messages delivered together are then received without waiting."""

    async def scenario() -> None:
        instance, _host, _ = new_instance(method="POST", headers=[("Content-Length", "2")])
        parked = asyncio.ensure_future(instance.receive())
        await turns()
        waiter = instance.waiter
        assert waiter is not None and not waiter.done()
        await turns(20)
        assert instance.waiter is waiter, "the same future all along"
        assert not parked.done()
        instance.deliver({"type": "http.request", "body": b"1", "more_body": True})
        instance.deliver({"type": "http.request", "body": b"2", "more_body": False})
        assert waiter.done()
        assert (await parked)["body"] == b"1"
        assert instance.waiter is None
        second = asyncio.ensure_future(instance.receive())
        await asyncio.sleep(0)
        assert second.done(), "a queued message is returned without waiting"
        assert second.result()["body"] == b"2"

    run(scenario())


def test_a_parked_receive_is_woken_by_the_peer_leaving() -> None:
    """Through the real machine: EOF delivers ``http.disconnect`` to the parked receive."""

    async def scenario() -> None:
        instance, host, spy = new_instance(method="POST", headers=[("Content-Length", "10")])
        parked = asyncio.ensure_future(instance.receive())
        await turns()
        assert not parked.done()
        host.eof()
        assert await parked == {"type": "http.disconnect"}
        assert spy.names().count("app_got_disconnect") == 1

    run(scenario())


@pytest.mark.parametrize("other", ["cancelled probe", "second receiver"])
def test_a_receive_parked_in_one_task_is_woken_whatever_another_task_s_receive_does(other: str) -> None:
    """Two tasks of one app may wait in ``receive()`` at once: a watcher for the
    disconnect, and a probe like Starlette's ``Request.is_disconnected()`` (a receive() in
    an already-cancelled scope), or a second reader. Each parked receive() must be woken;
    once the disconnect is delivered none of them may stay parked."""

    async def scenario() -> None:
        instance, _host, _ = new_instance(method="POST", headers=[("Content-Length", "10")])
        watcher = asyncio.ensure_future(instance.receive())
        await turns()
        second = asyncio.ensure_future(instance.receive())
        await turns()
        if other == "cancelled probe":
            second.cancel()
            await turns()
        else:
            instance.deliver({"type": "http.request", "body": b"1", "more_body": True})
            await turns()
        instance.deliver({"type": "http.disconnect"})
        await turns()
        try:
            assert watcher.done(), "the first receive() is still parked after the disconnect"
            if other == "second receiver":
                assert second.done()
                got = sorted(task.result()["type"] for task in (watcher, second))
                assert got == ["http.disconnect", "http.request"]
        finally:
            watcher.cancel()
            second.cancel()

    run(scenario())


def test_after_a_disconnect_receive_returns_the_same_disconnect() -> None:
    async def scenario() -> None:
        instance, _host, spy = new_instance(method="POST", headers=[("Content-Length", "10")])
        instance.deliver({"type": "http.disconnect"})
        first = await instance.receive()
        assert first == {"type": "http.disconnect"}
        again = [await asyncio.wait_for(instance.receive(), 1.0) for _ in range(3)]
        assert all(m is first for m in again)
        assert spy.names().count("app_got_disconnect") == 1, "the machine is told once"
        assert "app_wants_body" not in spy.names(), "no body is asked for after the disconnect"

    run(scenario())


def test_app_wants_body_is_asked_only_when_the_queue_is_empty() -> None:
    async def scenario() -> None:
        instance, _host, spy = new_instance(method="POST", headers=[("Content-Length", "2")])
        instance.deliver({"type": "http.request", "body": b"1", "more_body": True})
        await instance.receive()
        assert "app_wants_body" not in spy.names()
        parked = asyncio.ensure_future(instance.receive())
        await turns()
        assert spy.names().count("app_wants_body") == 1
        await turns(10)
        assert spy.names().count("app_wants_body") == 1, "asked once per wait, not polled"
        instance.deliver({"type": "http.request", "body": b"2", "more_body": False})
        await parked
        assert spy.names().count("app_wants_body") == 1

    run(scenario())


def test_100_continue_goes_out_only_when_the_app_waits_for_the_body() -> None:
    """What ``app_wants_body`` is for: the real machine answers ``Expect: 100-continue``
    when the app's ``receive()`` finds nothing queued, and the client then sends."""

    async def scenario() -> None:
        instance, host, _ = new_instance(method="POST", headers=[("Content-Length", "5"), ("Expect", "100-continue")])
        await turns()
        assert host.pair.client_events() == [], "nothing written before the app asks"
        parked = asyncio.ensure_future(instance.receive())
        await turns()
        events = host.pair.client_events()
        assert [(type(e), e.status_code) for e in events] == [(h11.InformationalResponse, 100)]
        host.feed(host.pair.client.send(h11.Data(data=b"hello")) or b"")
        host.feed(host.pair.client.send(h11.EndOfMessage()) or b"")
        message = await parked
        assert message["body"] == b"hello"

    run(scenario())


# -- reading pauses ------------------------------------------------------------------------


def test_deliver_over_read_high_water_bytes_pauses_input_and_receive_resumes_under_low_water() -> None:
    async def scenario() -> None:
        instance, host, _ = new_instance(
            method="POST", headers=[("Content-Length", "1000")], read_high_water=100, read_low_water=40
        )
        instance.deliver(body(60))
        instance.deliver(body(40))
        assert host.log == [], "100 bytes is not over 100"
        instance.deliver(body(30))
        assert host.log == ["pause"]
        assert instance.queued_bytes == 130
        await instance.receive()  # 70 left: not under 40
        await instance.receive()  # 30 left: under 40
        assert host.log == ["pause", "resume"]
        await instance.receive()
        assert host.log == ["pause", "resume"], "resumed once"
        assert instance.queued_bytes == 0

    run(scenario())


def test_deliver_over_queue_high_water_messages_pauses_input() -> None:
    async def scenario() -> None:
        instance, host, _ = new_instance(
            method="POST", headers=[("Content-Length", "1000")], read_low_water=10**5, queue_high_water=3
        )
        for _ in range(3):
            instance.deliver(body(1))
        assert host.log == []
        instance.deliver(body(1))
        assert host.log == ["pause"]
        await instance.receive()  # 3 queued: not under 3
        assert host.log == ["pause"]
        await instance.receive()  # 2 queued
        assert host.log == ["pause", "resume"]

    run(scenario())


# -- send() --------------------------------------------------------------------------------


def test_send_runs_the_machines_actions_through_the_host() -> None:
    async def scenario() -> None:
        instance, host, spy = new_instance()
        await instance.send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await instance.send({"type": "http.response.body", "body": b"hello"})
        assert spy.names() == ["app_send", "app_send"]
        # the head waits for the body; the last part completes the response in one write
        assert host.log == ["flush_head_soon", ("run", ["Write", "Deliver", "SetTimer"])]
        assert "drain" not in host.log, "no wait while the write buffer has room"
        [response] = collect(host.pair.client_events())
        assert (response.status, response.body) == (200, b"hello")

    run(scenario())


def test_send_awaits_drain_while_write_is_paused() -> None:
    async def scenario() -> None:
        instance, host, _ = new_instance()
        await instance.send({"type": "http.response.start", "status": 200})
        host.write_paused = True
        sending = asyncio.ensure_future(instance.send({"type": "http.response.body", "body": b"a", "more_body": True}))
        await turns()
        assert host.log[-1] == "drain"
        assert b"a" in host.pair.wire, "the bytes went to the transport first"
        assert not sending.done(), "send() waits for the write buffer"
        await turns(10)
        assert not sending.done()
        host.resume_writing()
        await asyncio.wait_for(sending, 1.0)
        await instance.send({"type": "http.response.body", "body": b"b"})
        assert host.log.count("drain") == 1

    run(scenario())


def test_a_held_back_head_asks_flush_head_soon() -> None:
    """``http.response.start`` yields no action (the head waits for the first body part),
    so the host is asked to flush it on the next loop turn; flushing writes the head
    alone; a body part that went first leaves nothing to flush."""

    async def scenario() -> None:
        instance, host, _ = new_instance()
        await instance.send({"type": "http.response.start", "status": 200})
        assert host.log == ["flush_head_soon"]
        assert host.pair.client_events() == []
        instance.flush_head()
        events = host.pair.client_events()
        assert [(type(e), e.status_code) for e in events] == [(h11.Response, 200)]

        other, host2, _ = new_instance()
        await other.send({"type": "http.response.start", "status": 204})
        await other.send({"type": "http.response.body"})
        written = len(host2.pair.wire)
        other.flush_head()
        assert len(host2.pair.wire) == written, "the head went with the body"

    run(scenario())


def test_no_flush_head_soon_during_an_eager_first_step() -> None:
    """Inside ``start()``'s eager first step (``instance.eager``) ``start()`` itself flushes
    the head when the step ends, so the host is not asked."""

    async def scenario() -> None:
        instance, host, _ = new_instance()
        instance.eager = True  # what start() sets around an eager first step
        await instance.send({"type": "http.response.start", "status": 200})
        assert "flush_head_soon" not in host.log

    run(scenario())


@pytest.mark.skipif(not EAGER, reason="eager Task start needs Python 3.12+")
def test_an_eager_start_flushes_the_head_when_the_first_step_ends() -> None:
    async def scenario() -> None:
        never = asyncio.get_running_loop().create_future()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200})
            await never

        instance, host, _ = new_instance(app)
        instance.start(eager=True)
        assert "flush_head_soon" not in host.log
        events = host.pair.client_events()
        assert [(type(e), e.status_code) for e in events] == [(h11.Response, 200)]
        never.cancel()

    run(scenario())


def test_a_protocol_error_is_logged_once_told_to_the_machine_and_raised_into_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "http.response.body", "body": b"before any start"})
        except ASGIProtocolError as exc:
            raised.append(exc)
            raise

    async def scenario() -> None:
        instance, host, spy = new_instance(app)
        instance.start(eager=False)
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        assert len(raised) == 1
        assert host.finished == [(instance, raised[0])]
        assert spy.names().count("app_misused") == 1
        [response] = collect(host.pair.client_events())
        assert response.status == 500

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario())
    errors = records(caplog, logging.ERROR)
    assert errors == [f"ASGI protocol error: {raised[0]}"], "once, not again when it ends the app"
    assert "http.response.body" in errors[0] and "GET /path" in errors[0]


def test_a_protocol_error_the_app_catches_is_logged_once_too(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        with contextlib.suppress(ASGIProtocolError):
            await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"still fine"})

    async def scenario() -> None:
        instance, host, spy = new_instance(app)
        instance.start(eager=False)
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        assert host.finished == [(instance, None)]
        assert spy.names().count("app_misused") == 1
        [response] = collect(host.pair.client_events())
        assert (response.status, response.body) == (200, b"still fine"), "a committed head stands"

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario())
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1 and errors[0].startswith("ASGI protocol error: http.response.start"), errors


# -- how the app ends ------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["return", "raise", "cancel", "client disconnected"])
def test_how_the_app_ends_reaches_app_finished_exactly_once(caplog: pytest.LogCaptureFixture, ending: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        go: asyncio.Future[None] = loop.create_future()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await go
            if ending == "raise":
                raise Boom("the view failed")
            if ending == "client disconnected":
                raise ClientDisconnected("client disconnected (GET /path from 127.0.0.1:53122)")
            await send({"type": "http.response.body", "body": b""})

        instance, host, _ = new_instance(app)
        instance.start(eager=False)
        await turns()
        assert host.finished == []
        if ending == "cancel":
            assert instance.task is not None
            instance.task.cancel()
        else:
            go.set_result(None)
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        await turns()
        assert len(host.finished) == 1
        assert host.finished[0][0] is instance
        assert instance.finished
        exc = host.finished[0][1]
        if ending == "return":
            assert exc is None
        elif ending == "raise":
            assert isinstance(exc, Boom)
        elif ending == "cancel":
            assert isinstance(exc, asyncio.CancelledError)
        else:
            assert isinstance(exc, ClientDisconnected)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario())
    errors = records(caplog, logging.ERROR)
    if ending == "raise":
        assert errors == ["Exception in app instance app for GET /path from 127.0.0.1:53122"]
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.exc_info is not None and isinstance(record.exc_info[1], Boom)
    else:
        assert errors == []
    if ending == "client disconnected":
        assert records(caplog, logging.INFO) == [
            "app instance app for GET /path from 127.0.0.1:53122 stopped: "
            "client disconnected (GET /path from 127.0.0.1:53122)"
        ]


class FrameworkDisconnect(Exception):
    """As Starlette's ClientDisconnect: what a framework raises from send()'s OSError."""


def test_a_framework_exception_raised_from_client_disconnected_is_a_stop_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_left = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await client_left.wait()
        try:
            await send({"type": "http.response.body", "body": b"y", "more_body": True})
        except OSError:
            raise FrameworkDisconnect() from None  # Starlette drops the cause; the context stays

    async def scenario() -> None:
        instance, host, _ = new_instance(app)
        instance.start(eager=False)
        await turns()
        host.pair.eof()
        client_left.set()
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        assert isinstance(host.finished[0][1], FrameworkDisconnect)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario())
    assert records(caplog, logging.ERROR) == []
    assert records(caplog, logging.INFO) == [
        "app instance app for GET /path from 127.0.0.1:53122 stopped: "
        "client disconnected (GET /path from 127.0.0.1:53122) (raised as FrameworkDisconnect)"
    ]


def test_an_app_returning_a_value_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> str:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        return "a response"

    async def scenario() -> None:
        instance, host, _ = new_instance(app)
        instance.start(eager=False)
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        assert host.finished == [(instance, None)]

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario())
    assert records(caplog, logging.WARNING) == [
        "ASGI app returned a value ('a response'); ASGI apps return None "
        "(app instance app for GET /path from 127.0.0.1:53122)"
    ]


# -- after the disconnect: app_close_timeout, cancel, abandon ---------------------------------


def test_an_app_overdue_after_its_disconnect_is_cancelled_once_after_app_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = FakeClockLoop()
    cancelled_at: list[float] = []

    async def stuck_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await asyncio.Event().wait()  # deaf to its disconnect
        except asyncio.CancelledError:
            cancelled_at.append(loop.time())
            raise

    async def scenario() -> None:
        instance, host, _ = new_instance(stuck_app, target="/slow", app_close_timeout=5.0)
        instance.start(eager=False)
        await turns()
        start = loop.time()
        host.eof()
        instance.connection_gone()
        instance.connection_gone()  # the server's shutdown calls it again: one timer
        loop.advance(4.99)
        await turns()
        assert cancelled_at == [] and host.finished == []
        loop.advance(0.01)
        await turns()
        assert cancelled_at == [start + 5.0]
        assert len(host.finished) == 1 and isinstance(host.finished[0][1], asyncio.CancelledError)
        instance.cancel_overdue()  # once more, from the server's step 5: nothing
        loop.advance(10.0)
        await turns()
        assert cancelled_at == [start + 5.0]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(scenario(), loop)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Cancelled app instance app for GET /slow from 127.0.0.1:53122: still running ")
    assert f"s after its disconnect (awaiting {__file__}:" in warnings[0]
    assert warnings[0].endswith(" in stuck_app)")


def test_an_app_that_returns_after_its_disconnect_is_not_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeClockLoop()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        await asyncio.sleep(1.0)  # some clean-up, within app_close_timeout

    async def scenario() -> None:
        instance, host, _ = new_instance(app, method="POST", headers=[("Content-Length", "5")], app_close_timeout=5.0)
        instance.start(eager=False)
        await turns()
        host.eof()
        instance.connection_gone()
        await turns()
        loop.advance(1.0)
        await turns()
        assert host.finished == [(instance, None)]
        assert instance.scheduled == {} and len(host.timers) == 0  # its app_close_timeout is forgotten
        loop.advance(10.0)
        await turns()
        assert instance.cancelled_at is None

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(scenario(), loop)
    assert records(caplog, logging.WARNING) == []


def test_the_cancel_line_names_the_consumer_class_that_waits() -> None:
    """``describe(owner)``: a Channels-style app, an object holding ``scope``, is named."""

    class Consumer:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def wait_forever(self) -> None:
            await asyncio.Event().wait()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await Consumer(scope).wait_forever()

    lines: list[str] = []

    async def scenario() -> None:
        instance, host, _ = new_instance(app, target="/ws/chat/")
        instance.start(eager=False)
        await turns()
        host.eof()
        handler = _ListHandler(lines)
        logging.getLogger(LOGGER).addHandler(handler)
        try:
            instance.cancel_overdue()
        finally:
            logging.getLogger(LOGGER).removeHandler(handler)
        await turns()

    run(scenario())
    assert len(lines) == 1
    assert lines[0].startswith(
        "Cancelled app instance app (test_the_cancel_line_names_the_consumer_class_that_waits.<locals>.Consumer) for GET /ws/chat/ "
    )
    assert lines[0].endswith(" in wait_forever)")


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_abandoning_an_app_that_swallows_its_cancellation_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeClockLoop()
    stop = asyncio.Event()
    swallowed: list[float] = []

    async def deaf(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        while not stop.is_set():
            try:
                await stop.wait()
            except asyncio.CancelledError:
                swallowed.append(loop.time())

    async def scenario() -> None:
        instance, host, _ = new_instance(deaf, app_close_timeout=2.0)
        instance.start(eager=False)
        await turns()
        host.eof()
        instance.connection_gone()
        loop.advance(2.0)
        await turns()
        assert len(swallowed) == 1, "cancelled once"
        assert instance.task is not None and not instance.task.done()
        instance.cancel_overdue()  # the server's step 5 again: not a second cancellation
        await turns()
        assert len(swallowed) == 1
        instance.abandon()
        instance.abandon()
        assert host.finished == []
        stop.set()  # let it end, so that the loop closes cleanly
        await turns()
        assert len(host.finished) == 1
        instance.abandon()  # finished: nothing

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(scenario(), loop)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("Cancelled app instance ")
    assert warnings[1].startswith(
        "Abandoned app instance app for GET /path from 127.0.0.1:53122: still running 1s after it was cancelled (awaiting "
    )
    assert warnings[1].endswith(" in deaf); exiting without it")


# -- one Task, fresh context ---------------------------------------------------------------


@pytest.mark.parametrize("eager", [False, True], ids=["plain", "eager"])
def test_every_step_of_the_app_runs_inside_one_task(eager: bool) -> None:
    seen: list[tuple[str, asyncio.Task[Any] | None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(("first line", asyncio.current_task()))
        await receive()
        seen.append(("after receive", asyncio.current_task()))
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        seen.append(("after send", asyncio.current_task()))
        await send({"type": "http.response.body", "body": b"b"})
        seen.append(("returning", asyncio.current_task()))

    async def scenario() -> None:
        instance, host, _ = new_instance(app, method="POST", headers=[("Content-Length", "1")])
        host.write_paused = True  # the first body part waits in drain()
        instance.start(eager=eager)
        assert instance.task is not None
        await turns()
        assert [step for step, _ in seen] == ["first line"], "receive() waits"
        host.feed(host.pair.client.send(h11.Data(data=b"1")) or b"")
        await turns()
        assert [step for step, _ in seen] == ["first line", "after receive"], "send() waits for drain"
        host.resume_writing()
        await asyncio.wait_for(host.finished_event.wait(), 1.0)
        assert host.finished == [(instance, None)]
        assert [step for step, _ in seen] == ["first line", "after receive", "after send", "returning"]
        assert all(task is instance.task for _, task in seen), seen

    run(scenario())


def test_each_instance_starts_from_a_fresh_copy_of_the_settings_context() -> None:
    server_context = contextvars.copy_context()
    server_context.run(VAR.set, "server")
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(VAR.get())
        VAR.set(scope["path"])
        await asyncio.sleep(0)
        seen.append(VAR.get())
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async def scenario() -> None:
        for path in ("/one", "/two"):
            instance, host, _ = new_instance(app, target=path, context=server_context)
            instance.start(eager=True)
            await asyncio.wait_for(host.finished_event.wait(), 1.0)

    run(scenario())
    assert seen == ["server", "/one", "server", "/two"]
    assert server_context[VAR] == "server", "the settings' context itself is never changed"
    assert VAR.get() == "unset"
