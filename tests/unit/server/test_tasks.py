"""How the server starts and ends Tasks (``server.tasks``).

Every step of an app instance runs inside one asyncio Task, started the way the event loop
really starts it: ``data_received`` called from a plain loop callback (a socket read), never
from inside a Task. Python 3.12+ starts the Task eagerly (asyncio's own ``eager_start``: the
first step runs inside ``data_received``); 3.10 and 3.11 start a plain Task. Either way the
app's first line and every later step see the same ``asyncio.current_task()``, so
``asyncio.timeout()``, ``asyncio.wait_for`` and anyio task groups work in the first step.

A Task that swallows its cancellation is abandoned after ``CANCEL_GRACE``, named once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import h11
import pytest
import uvloop
import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from channelserver.config import Config
from channelserver.server.connection import ConnectionProtocol
from channelserver.server.state import ServerState
from channelserver.server.tasks import CANCEL_GRACE, EAGER, abandon, close_loop, start_task

from .fakes import MockTransport

ROOT = Path(__file__).resolve().parents[3]

TIMEOUT = 5.0
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":  # what --loop auto picks; installed with the test extras
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


LOOPS = ["asyncio", "uvloop"]


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """``asyncio.timeout()`` where it exists (3.11+), else ``asyncio.wait_for`` of a step:
    both need the current Task."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            yield
    else:
        await asyncio.wait_for(asyncio.sleep(0), seconds)
        yield


class Tasks:
    """Records ``asyncio.current_task()`` at each step of an app instance."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, asyncio.Task[Any] | None]] = []
        self.done = asyncio.Event()
        self.error: BaseException | None = None

    def mark(self, step: str) -> None:
        self.seen.append((step, asyncio.current_task()))

    def check_one_task(self, steps: list[str]) -> None:
        if self.error is not None:
            raise self.error
        assert [step for step, _ in self.seen] == steps
        tasks = {id(task) for _, task in self.seen}
        assert None not in [task for _, task in self.seen], f"a step ran outside any Task: {self.seen}"
        assert len(tasks) == 1, f"the steps ran in {len(tasks)} different Tasks: {self.seen}"


def http_app(tasks: Tasks) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            tasks.mark("first line")
            VAR.set(scope["path"])
            async with deadline(TIMEOUT):
                tasks.mark("in timeout")
                await asyncio.wait_for(receive(), TIMEOUT)
                tasks.mark("after wait_for")
            async with anyio.create_task_group() as group:
                group.start_soon(asyncio.sleep, 0)
                tasks.mark("in task group")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            tasks.mark("returning")
            assert VAR.get() == scope["path"]
        except BaseException as exc:
            tasks.error = exc
            raise
        finally:
            tasks.done.set()

    return app


HTTP_STEPS = ["first line", "in timeout", "after wait_for", "in task group", "returning"]


def websocket_app(tasks: Tasks) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            tasks.mark("first line")
            async with deadline(TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(asyncio.sleep, 0)
                    assert (await asyncio.wait_for(receive(), TIMEOUT))["type"] == "websocket.connect"
                    tasks.mark("before accept")
                await send({"type": "websocket.accept"})
            async with deadline(TIMEOUT):
                message = await asyncio.wait_for(receive(), TIMEOUT)
                tasks.mark("after accept")
                async with anyio.create_task_group() as group:
                    group.start_soon(asyncio.sleep, 0)
                await send({"type": "websocket.send", "text": message["text"]})
            assert (await receive())["type"] == "websocket.disconnect"
            tasks.mark("returning")
        except BaseException as exc:
            tasks.error = exc
            raise
        finally:
            tasks.done.set()

    return app


WS_STEPS = ["first line", "before accept", "after accept", "returning"]


def connect_on(loop: asyncio.AbstractEventLoop, app: Any, **config: Any) -> tuple[ConnectionProtocol, MockTransport]:
    """A connection made on ``loop`` (not running: no Task is current), outside any Task."""
    protocol = ConnectionProtocol(ServerState(Config(**config), app, loop))
    transport = MockTransport(loop)
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def http_get() -> bytes:
    return h11.Connection(h11.CLIENT).send(h11.Request(method="GET", target="/a", headers=[("Host", "x")])) or b""


# -- the Task itself -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOOPS)
def test_start_task_runs_the_first_step_inside_the_task_it_returns(kind: str) -> None:
    loop = new_loop(kind)
    seen: list[Any] = []

    async def coro() -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    def from_a_callback() -> None:
        task = start_task(loop, coro(), True, contextvars.copy_context())
        seen.append(task)
        # eager (3.12+): the first step has run, inside the Task; else it has not run yet
        assert len(seen) == (2 if EAGER else 1)

    try:
        loop.call_soon(from_a_callback)
        loop.run_until_complete(asyncio.sleep(0.01))
        while not all(isinstance(t, asyncio.Task) and t.done() for t in seen):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    task = next(t for t in seen if t is not None)
    assert seen.count(task) == 3, seen


def test_eager_start_is_asyncio_s_own_on_3_12_and_later() -> None:
    assert EAGER is (sys.version_info >= (3, 12))


# -- data_received from a plain loop callback ----------------------------------------------------


@pytest.mark.parametrize("kind", LOOPS)
def test_http_app_steps_run_in_one_task_when_data_arrives_from_a_loop_callback(kind: str) -> None:
    loop = new_loop(kind)
    tasks = Tasks()
    try:
        protocol, transport = connect_on(loop, http_app(tasks))
        loop.call_soon(protocol.data_received, http_get())
        loop.run_until_complete(asyncio.wait_for(tasks.done.wait(), TIMEOUT))
        loop.run_until_complete(asyncio.sleep(0))
        assert b"HTTP/1.1 200 " in transport.buffer and transport.buffer.endswith(b"\r\n\r\nok")
    finally:
        loop.close()
    tasks.check_one_task(HTTP_STEPS)


@pytest.mark.parametrize("kind", LOOPS)
def test_websocket_app_steps_run_in_one_task_when_data_arrives_from_a_loop_callback(kind: str) -> None:
    loop = new_loop(kind)
    tasks = Tasks()
    client = wsproto.WSConnection(ConnectionType.CLIENT)

    async def client_events(transport: MockTransport) -> list[Any]:
        """The client's events from what the server writes next (at least one)."""
        while True:
            await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
            client.receive_data(transport.take())
            events = list(client.events())
            if events:
                return events

    async def scenario(protocol: ConnectionProtocol, transport: MockTransport) -> None:
        assert [type(e) for e in await client_events(transport)] == [AcceptConnection]
        loop.call_soon(protocol.data_received, client.send(TextMessage(data="hello")))
        assert [e.data for e in await client_events(transport)] == ["hello"]
        loop.call_soon(protocol.data_received, client.send(CloseConnection(code=1000)))
        await asyncio.wait_for(tasks.done.wait(), TIMEOUT)

    try:
        protocol, transport = connect_on(loop, websocket_app(tasks), ws_ping_interval=None)
        loop.call_soon(protocol.data_received, client.send(Request(host="x", target="/ws")))
        loop.run_until_complete(scenario(protocol, transport))
    finally:
        loop.close()
    tasks.check_one_task(WS_STEPS)


@pytest.mark.parametrize("kind", LOOPS)
def test_http_app_steps_run_in_one_task_on_a_real_socket(kind: str) -> None:
    """The loop itself reads the socket and calls ``data_received``."""
    loop = new_loop(kind)
    tasks = Tasks()

    async def scenario() -> bytes:
        state = ServerState(Config(), http_app(tasks), loop)
        server = await loop.create_server(lambda: ConnectionProtocol(state), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(http_get())
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), TIMEOUT)
            await asyncio.wait_for(tasks.done.wait(), TIMEOUT)
            state.all_closed = asyncio.Event()
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(state.all_closed.wait(), TIMEOUT)  # the server's side too
            return answer
        finally:
            server.close()
            await server.wait_closed()

    try:
        answer = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    tasks.check_one_task(HTTP_STEPS)


def test_context_variables_set_by_one_request_are_not_seen_by_the_next() -> None:
    loop = asyncio.new_event_loop()
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(VAR.get())
        VAR.set(scope["path"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    try:
        protocol, transport = connect_on(loop, app)
        for _ in range(3):
            loop.call_soon(protocol.data_received, http_get())
            loop.run_until_complete(asyncio.wait_for(transport.wrote.wait(), TIMEOUT))
            transport.take()
    finally:
        loop.close()
    assert seen == ["unset", "unset", "unset"]
    assert VAR.get() == "unset"


# -- letting go of Tasks that will not end ------------------------------------------------------


async def _deaf() -> None:
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


async def _polite() -> None:
    await asyncio.Event().wait()


def test_close_loop_abandons_a_task_that_swallows_its_cancellation(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    deaf = loop.create_task(_deaf())
    polite = loop.create_task(_polite())
    loop.run_until_complete(asyncio.sleep(0))
    started = loop.time()
    close_loop(loop)
    took = loop.time() - started
    assert loop.is_closed()
    assert polite.cancelled()
    assert not deaf.done()
    assert CANCEL_GRACE <= took < CANCEL_GRACE + 0.5
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Abandoned task _deaf: still running 1s after it was cancelled (awaiting ")
    assert "test_tasks.py" in lines[0] and "in _deaf" in lines[0]


def test_a_task_is_abandoned_once() -> None:
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_deaf())
        loop.run_until_complete(asyncio.sleep(0))
        abandon(task, "the deaf one", "here")
        started = loop.time()
        close_loop(loop)  # an abandoned task is not cancelled and waited for again
        assert loop.time() - started < CANCEL_GRACE / 2
    finally:
        if not loop.is_closed():
            loop.close()


def test_a_pipelined_request_does_not_see_the_context_of_the_one_before() -> None:
    """The second request is started from inside the first one's Task (its last send()
    completes the response, which reads the next head): it must still start from the
    server's context, not the first request's."""
    loop = asyncio.new_event_loop()
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(VAR.get())
        VAR.set(scope["path"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    def request(path: str) -> bytes:
        return h11.Connection(h11.CLIENT).send(h11.Request(method="GET", target=path, headers=[("Host", "x")])) or b""

    try:
        protocol, transport = connect_on(loop, app)
        loop.call_soon(protocol.data_received, request("/first") + request("/second") + request("/third"))
        while transport.buffer.count(b"HTTP/1.1 204") < 3:
            transport.wrote.clear()
            loop.run_until_complete(asyncio.wait_for(transport.wrote.wait(), TIMEOUT))
    finally:
        loop.close()
    assert seen == ["unset", "unset", "unset"]


def test_a_task_factory_the_loop_has_makes_every_instance_s_task() -> None:
    """Instrumentation (error reporters, monitors) installs a task factory; an eager start
    would bypass it, so with one installed the instance's Task is the factory's."""
    loop = asyncio.new_event_loop()
    made: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    tasks = Tasks()
    try:
        loop.set_task_factory(factory)
        protocol, _ = connect_on(loop, http_app(tasks))
        loop.call_soon(protocol.data_received, http_get())
        loop.run_until_complete(asyncio.wait_for(tasks.done.wait(), TIMEOUT))
    finally:
        loop.close()
    tasks.check_one_task(HTTP_STEPS)
    assert tasks.seen[0][1] in made


def test_close_loop_reports_an_exception_a_task_raises_as_it_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    async def cleanup_fails() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("cleanup failed")

    loop = asyncio.new_event_loop()
    task = loop.create_task(cleanup_fails())
    loop.run_until_complete(asyncio.sleep(0))
    close_loop(loop)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        "Exception in task test_close_loop_reports_an_exception_a_task_raises_as_it_is_cancelled.<locals>.cleanup_fails "
        "as it was cancelled at shutdown"
    ]
    assert isinstance(task.exception(), ValueError)


WATCHDOG = """
import atexit, sys, threading, time
from channelserver.server.tasks import exit_watchdog
import logging
logging.basicConfig(level=logging.INFO)
if sys.argv[1] == "stuck":
    threading.Thread(target=time.sleep, args=(60,), name="stuck-thread").start()
else:
    atexit.register(lambda: (time.sleep(1.5), print("atexit handler finished", flush=True)))
exit_watchdog(7)
sys.exit(7)
"""


@pytest.mark.parametrize("case", ["stuck", "slow atexit"])
def test_the_exit_watchdog_ends_a_process_only_when_a_thread_holds_its_exit(case: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", WATCHDOG, case.split()[0]], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    took = time.monotonic() - started
    assert done.returncode == 7, done.stderr
    if case == "stuck":
        assert "Exit still waiting 1s later on thread(s) an app left busy: stuck-thread (at " in done.stderr
        assert took < 10, took  # not the thread's 60 s
    else:
        assert "atexit handler finished" in done.stdout, done
        assert "Exit still waiting" not in done.stderr, done.stderr
