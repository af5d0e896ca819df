"""Ordered, bounded shutdown of one server process, with real clients on real sockets.

Each test starts ``python -m channelserver`` on ``lifecycle_apps/lifecycle_app.py``, puts
connections in a known state, signals the process and checks what every client saw, what
the apps were told (counted in an events file), the log, the exit code and how long the
process took from the signal to its exit.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest
from lifecycle_apps.harness import SHUTTING_DOWN, Events, serve, stop_timed
from websockets.asyncio.client import ClientConnection, connect

APP = "lifecycle_app:application"


@pytest.fixture
def events(tmp_path: Path) -> Events:
    return Events(tmp_path / "events.log")


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response up to EOF: (status, headers lower-cased, body)."""
    sock.settimeout(timeout)
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def open_many(url: str, n: int, batch: int = 100) -> list[ClientConnection]:
    """``n`` WebSocket clients, opened ``batch`` at a time to keep the machine's load bounded."""
    clients: list[ClientConnection] = []
    while len(clients) < n:
        size = min(batch, n - len(clients))
        clients += await asyncio.gather(*(connect(url, ping_interval=None, open_timeout=10) for _ in range(size)))
    return clients


def test_sigterm_closes_500_idle_websockets_with_1012_and_tells_every_consumer(events: Events) -> None:
    """Idle sockets never slow a deploy: all get 1012 + reason, every consumer's disconnect runs, gone in 2 s."""
    n = 500
    with serve(APP, "--no-access-log", events=events) as server:

        async def scenario() -> tuple[list[tuple[int | None, str]], int, float]:
            clients = await open_many(f"{server.ws_url}/ws/idle/", n)
            stopping = asyncio.ensure_future(asyncio.to_thread(stop_timed, server, signal.SIGTERM, 10.0))
            for ws in clients:  # each client answers the server's close frame as it reads it
                await asyncio.wait_for(ws.wait_closed(), 10)
            rc, took = await stopping
            return [(ws.close_code, ws.close_reason or "") for ws in clients], rc, took

        closes, rc, took = asyncio.run(scenario())

    print(f"{n} idle WebSockets: SIGTERM to exit {took:.2f}s")
    assert rc == 0, server.text
    assert [code for code, _ in closes] == [1012] * n
    assert all(reason == "server restarting" for _, reason in closes), set(closes)
    assert events.count("disconnect 1012") == n, events.lines()[:5]
    assert took < 2.0, f"exit took {took:.2f}s\n{server.text}"


def test_sigterm_lets_an_inflight_request_finish_and_refuses_new_connections(events: Events) -> None:
    """In-flight HTTP finishes (200, connection: close); the listener is closed at once; exit 0."""
    with serve(APP, events=events) as server:
        assert server.port is not None
        inflight = socket.create_connection(("127.0.0.1", server.port))
        with inflight:
            sent = time.monotonic()
            inflight.sendall(b"GET /slow?seconds=2 HTTP/1.1\r\nHost: test\r\n\r\n")
            server.wait_for(re.compile(rb"event: slow start"))
            server.signal(signal.SIGTERM)
            server.wait_for(SHUTTING_DOWN)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            status, headers, body = read_response(inflight)
            answered = time.monotonic() - sent
        rc = server.wait(10)

    assert status == 200
    assert headers.get("connection") == "close"
    assert body == b"slept 2.0\n"
    assert answered >= 2.0
    assert rc == 0, server.text
    assert events.count("lifespan shutdown") == 1


def test_apps_that_never_return_cannot_hang_shutdown(events: Events) -> None:
    """An app ignoring websocket.disconnect, a consumer whose disconnect() hangs and an endless
    event stream: each cancelled after the timeouts with a log line naming it, the consumer
    class and the app line it was stuck on; exit 0 within graceful + app_close + 1 s."""
    graceful, app_close = 1.0, 1.0
    flags = ("--graceful-timeout", str(graceful), "--app-close-timeout", str(app_close))
    with serve(APP, *flags, events=events) as server:
        assert server.port is not None
        sse = socket.create_connection(("127.0.0.1", server.port))
        with sse:
            sse.sendall(b"GET /sse HTTP/1.1\r\nHost: test\r\n\r\n")
            server.wait_for(re.compile(rb"event: sse streaming"))

            async def scenario() -> tuple[list[int | None], int, float]:
                clients = [
                    await connect(f"{server.ws_url}/ws/stubborn/", ping_interval=None),
                    await connect(f"{server.ws_url}/ws/stuck/", ping_interval=None),
                ]
                stopping = asyncio.ensure_future(asyncio.to_thread(stop_timed, server, signal.SIGTERM, 15.0))
                for ws in clients:
                    await asyncio.wait_for(ws.wait_closed(), 10)
                rc, took = await stopping
                return [ws.close_code for ws in clients], rc, took

            ws_codes, rc, took = asyncio.run(scenario())
            _, _, streamed = read_response(sse)

    print(f"stuck apps: SIGTERM to exit {took:.2f}s (bound {graceful + app_close + 1.0}s)")
    log = server.text
    assert rc == 0, log
    assert ws_codes == [1012, 1012]
    assert events.count("stubborn got disconnect") == 1
    assert events.count("stuck got disconnect") == 1
    assert b"data: hello" in streamed
    assert events.count("lifespan shutdown") == 1
    cancelled = [line for line in log.splitlines() if "Cancelled app instance" in line]
    assert len(cancelled) == 3, log
    sse_line = next(line for line in cancelled if "GET /sse" in line)
    stubborn_line = next(line for line in cancelled if "WebSocket /ws/stubborn/" in line)
    stuck_line = next(line for line in cancelled if "WebSocket /ws/stuck/" in line)
    # Each names the line of the app it was stuck on (not asyncio's internals) ...
    assert re.search(r"awaiting \S*lifecycle_app\.py:\d+ in http_app", sse_line), sse_line
    assert re.search(r"awaiting \S*lifecycle_app\.py:\d+ in stubborn_websocket", stubborn_line), stubborn_line
    assert re.search(r"awaiting \S*lifecycle_app\.py:\d+ in disconnect", stuck_line), stuck_line
    # ... the consumer class where there is one, and how long it had.
    assert "StuckConsumer" in stuck_line, stuck_line
    assert re.search(r"still running 1\.\ds after its disconnect", stubborn_line), stubborn_line
    assert took < graceful + app_close + 1.0, f"exit took {took:.2f}s\n{log}"


def test_a_second_sigint_skips_the_waiting(events: Events) -> None:
    """With a stream open and the default 30 s grace, a second Ctrl-C ends the process at once."""
    with serve(APP, events=events) as server:
        assert server.port is not None
        sse = socket.create_connection(("127.0.0.1", server.port))
        with sse:
            sse.sendall(b"GET /sse HTTP/1.1\r\nHost: test\r\n\r\n")
            server.wait_for(re.compile(rb"event: sse streaming"))
            server.signal(signal.SIGINT)
            server.wait_for(SHUTTING_DOWN)
            rc, took = stop_timed(server, signal.SIGINT, 10.0)

    assert rc == 0, server.text
    assert took < 1.0, f"exit took {took:.2f}s after the second SIGINT\n{server.text}"
    assert re.search(r"Cancelled app instance \S+ for GET /sse", server.text), server.text


def test_a_lifespan_shutdown_that_never_answers_cannot_hang_the_exit(events: Events) -> None:
    """The last step is bounded too: a stuck lifespan shutdown gets ``app_close_timeout``, is
    named in the log, and the process exits."""
    app_close = 1.0
    with serve("lifecycle_hung_lifespan:application", "--app-close-timeout", str(app_close), events=events) as server:
        rc, took = stop_timed(server, signal.SIGTERM, app_close + 4.0)

    assert events.count("lifespan shutdown received") == 1
    assert re.search(r"(?i)lifespan shutdown.*(did not|not complete|timed out|cancel)", server.text), server.text
    assert rc == 0, server.text
    assert took < app_close + 1.0, f"exit took {took:.2f}s"


DEAF = "lifecycle_deaf:application"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def shutdown_span(log: str) -> float:
    """Seconds from the server's "Shutting down" line to its last log line."""
    start = next(line for line in log.splitlines() if "Shutting down" in line)
    first = datetime.strptime(_STAMP.match(start).group(1), "%Y-%m-%d %H:%M:%S,%f")  # type: ignore[union-attr]
    last = datetime.strptime(_STAMP.findall(log)[-1], "%Y-%m-%d %H:%M:%S,%f")
    return (last - first).total_seconds()


@pytest.mark.parametrize("workers", [None, 1], ids=["one process", "under the supervisor"])
def test_apps_that_swallow_their_cancellation_are_abandoned_and_the_process_exits_0(
    events: Events, workers: int | None
) -> None:
    """An HTTP app and a consumer's disconnect() that catch CancelledError and go on awaiting:
    cancelled after app_close_timeout, abandoned CANCEL_GRACE (1 s) later with one WARNING
    line each naming the path, the consumer and the line awaited; exit 0 within
    graceful + app_close + 2 s."""
    graceful, app_close = 1.0, 1.0
    flags = ["--graceful-timeout", str(graceful), "--app-close-timeout", str(app_close)]
    if workers is not None:
        flags += ["--workers", str(workers)]
    with serve(DEAF, *flags, events=events) as server:
        assert server.port is not None
        deaf = socket.create_connection(("127.0.0.1", server.port))
        with deaf:
            deaf.sendall(b"GET /deaf HTTP/1.1\r\nHost: test\r\n\r\n")
            server.wait_for(re.compile(rb"event: deaf request"))

            async def scenario() -> tuple[int | None, int, float]:
                ws = await connect(f"{server.ws_url}/ws/deaf/", ping_interval=None)
                stopping = asyncio.ensure_future(asyncio.to_thread(stop_timed, server, signal.SIGTERM, 15.0))
                await asyncio.wait_for(ws.wait_closed(), 10)
                rc, took = await stopping
                return ws.close_code, rc, took

            ws_code, rc, took = asyncio.run(scenario())

    log = server.text
    print(f"apps swallowing their cancellation: SIGTERM to exit {took:.2f}s (bound {graceful + app_close + 2.0}s)")
    assert rc == 0, log
    assert ws_code == 1012
    assert events.count("deaf request cancelled") >= 1, events.lines()
    assert events.count("deaf consumer cancelled") >= 1, events.lines()
    abandoned = [line for line in log.splitlines() if "Abandoned" in line]
    assert len(abandoned) == 2, log
    http_line = next(line for line in abandoned if "GET /deaf" in line)
    ws_line = next(line for line in abandoned if "WebSocket /ws/deaf/" in line)
    for line in abandoned:
        assert "WARNING" in line, line
        assert "still running 1s after it was cancelled" in line, line
        assert re.search(r"awaiting \S*lifecycle_deaf\.py:\d+ in swallow_cancellation", line), line
    assert "DeafConsumer" in ws_line, ws_line
    assert "DeafConsumer" not in http_line, http_line
    assert "Task was destroyed but it is pending" not in log, log
    # The promise, on the server's own clock (its log lines), free of the time a loaded
    # machine takes to start and reap processes; the wall clock gets a second more.
    span = shutdown_span(log)
    assert span < graceful + app_close + 2.0, f"shutdown took {span:.2f}s by the log\n{log}"
    assert took < graceful + app_close + 3.0, f"exit took {took:.2f}s\n{log}"


def test_a_background_task_that_swallows_its_cancellation_cannot_hang_the_exit(events: Events) -> None:
    """A task an app left behind is cancelled with the loop's last clean-up and abandoned
    CANCEL_GRACE later, named in one WARNING line."""
    with serve(DEAF, events=events) as server:
        assert server.port is not None
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /orphan HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            status, _, body = read_response(sock)
        assert (status, body) == (200, b"ok\n")
        rc, took = stop_timed(server, signal.SIGTERM, 10.0)

    log = server.text
    assert rc == 0, log
    assert events.count("orphan task cancelled") == 1, events.lines()
    abandoned = [line for line in log.splitlines() if "Abandoned" in line]
    assert len(abandoned) == 1, log
    assert re.search(r"Abandoned task swallow_cancellation: .*awaiting \S*lifecycle_deaf\.py:\d+", abandoned[0])
    assert "Task was destroyed but it is pending" not in log, log
    assert took < 2.0 + 1.0, f"exit took {took:.2f}s\n{log}"


def test_a_lifespan_shutdown_that_swallows_its_cancellation_cannot_hang_the_exit(events: Events) -> None:
    app_close = 1.0
    with serve(DEAF, "--app-close-timeout", str(app_close), events=events, env={"DEAF_LIFESPAN": "1"}) as server:
        rc, took = stop_timed(server, signal.SIGTERM, app_close + 6.0)

    log = server.text
    assert events.count("deaf lifespan shutdown") == 1
    assert events.count("deaf lifespan cancelled") == 1, events.lines()
    assert rc == 0, log
    abandoned = [line for line in log.splitlines() if "Abandoned" in line]
    assert len(abandoned) == 1 and "the lifespan app instance" in abandoned[0], log
    assert re.search(r"awaiting \S*lifecycle_deaf\.py:\d+ in swallow_cancellation", abandoned[0]), abandoned[0]
    assert took < app_close + 2.0, f"exit took {took:.2f}s\n{log}"


@pytest.mark.parametrize("workers", [None, 1], ids=["one process", "under the supervisor"])
def test_a_thread_an_app_left_busy_cannot_hang_the_exit(events: Events, workers: int | None) -> None:
    """A sync function stuck in sync_to_async: the thread cannot be cancelled, and Python's
    exit would wait for it. The process exits 0 anyway, CANCEL_GRACE after its own exit,
    and one WARNING line names the thread and the line it is stuck on."""
    graceful, app_close = 1.0, 1.0
    flags = ["--graceful-timeout", str(graceful), "--app-close-timeout", str(app_close)]
    if workers is not None:
        flags += ["--workers", str(workers)]
    with serve(DEAF, *flags, events=events) as server:
        assert server.port is not None
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /blocked HTTP/1.1\r\nHost: test\r\n\r\n")
            server.wait_for(re.compile(rb"event: blocked request"))
            rc, took = stop_timed(server, signal.SIGTERM, 15.0)

    log = server.text
    print(f"a thread left busy: SIGTERM to exit {took:.2f}s (bound {graceful + app_close + 3.0}s)")
    assert rc == 0, log
    waiting = [line for line in log.splitlines() if "Exit still waiting" in line]
    assert len(waiting) == 1, log
    assert "WARNING" in waiting[0], waiting[0]
    # the executor's thread, and the innermost line of Python it is on (time.sleep is C code)
    assert re.search(r"busy: ThreadPoolExecutor\S* \(at \S+\.py:\d+ in \w+\); exiting without them", waiting[0])
    assert took < graceful + app_close + 3.0, f"exit took {took:.2f}s\n{log}"
