"""The limits that keep a worker alive under overload, and the paced drain of a deploy,
on a real server process with real clients.

Each limit answers 503 with ``Retry-After`` before the app sees the request (for a
WebSocket, before the upgrade), counts what it refused in the log, and leaves HTTP and the
health path served. The drain answers the health path 503 from its start, serves on for
``drain_delay``, then closes WebSockets at moments spread over ``drain_spread``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from lifecycle_apps.harness import Events, serve, stop_timed
from websockets.asyncio.client import connect

pytestmark = pytest.mark.timeout(60)

APP = "lifecycle_app:application"


@pytest.fixture
def events(tmp_path: Path) -> Events:
    return Events(tmp_path / "events.log")


def http_get(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, read to EOF (every server answer here closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def handshake(port: int, path: str = "/ws/idle/") -> tuple[int, dict[str, str], socket.socket]:
    """A WebSocket handshake on a raw socket: (status, headers, the open socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers, sock


def test_ws_max_connections_answers_503_before_the_upgrade_and_http_is_still_served(events: Events) -> None:
    flags = ("--ws-max-connections", "3", "--health-path", "/healthz")
    with serve(APP, *flags, events=events) as server:
        assert server.port is not None
        opened = [handshake(server.port) for _ in range(3)]
        assert [status for status, _, _ in opened] == [101, 101, 101]
        status, headers, sock = handshake(server.port)
        assert status == 503
        assert int(headers["retry-after"]) >= 1
        assert sock.recv(4096) == b""  # closed after the answer (the body came with the head)
        sock.close()
        # HTTP and the health path are not limited by the WebSocket cap
        assert http_get(server.port, "/tasks")[0] == 200
        assert http_get(server.port, "/healthz")[0] == 200
        # one closes: a handshake is accepted again
        opened.pop()[2].close()
        deadline = time.monotonic() + 10
        while True:
            status, _, sock = handshake(server.port)
            if status == 101 or time.monotonic() > deadline:
                break
            sock.close()
        assert status == 101
        sock.close()
        for _, _, s in opened:
            s.close()
    log = server.text
    assert events.count("connect") == 4, events.lines()  # the refused handshake never reached the app
    assert "3 WebSocket connections open, the ws_max_connections limit; 1 refused by ws_max_connections so far" in log
    assert "(answered 503)" in log


def test_ws_accept_rate_answers_503_with_retry_after_over_the_rate(events: Events) -> None:
    flags = ("--ws-accept-rate", "2", "--ws-accept-burst", "3")
    with serve(APP, *flags, events=events) as server:
        assert server.port is not None
        results = [handshake(server.port) for _ in range(6)]
        statuses = [status for status, _, _ in results]
        assert statuses[:3] == [101, 101, 101], statuses
        assert 503 in statuses[3:], statuses
        refused = [headers for status, headers, _ in results if status == 503]
        assert all(int(h["retry-after"]) >= 1 for h in refused), refused
        for _, _, sock in results:
            sock.close()
        retry = int(refused[-1]["retry-after"])
        time.sleep(retry)  # the client's side of Retry-After: wait as told, then retry
        status, _, sock = handshake(server.port)
        sock.close()
        assert status == 101
    assert f"{len(refused)} refused by ws_accept_rate so far" in server.text
    assert events.count("connect") == statuses.count(101) + 1  # the refused never reached the app


def test_limit_concurrency_answers_503_while_the_health_path_is_served(events: Events) -> None:
    flags = ("--limit-concurrency", "1", "--health-path", "/healthz")
    with serve(APP, *flags, events=events) as server:
        assert server.port is not None
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with slow:
            slow.sendall(b"GET /slow?seconds=1.5 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            server.wait_for(re.compile(rb"event: slow start"))
            status, headers, body = http_get(server.port, "/tasks")
            assert (status, headers["retry-after"]) == (503, "1")
            assert b"retry later" in body
            assert http_get(server.port, "/healthz")[0] == 200
            data = b""
            while chunk := slow.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
        assert http_get(server.port, "/tasks")[0] == 200
    assert "1 requests in flight, the limit_concurrency; 1 refused by limit_concurrency so far" in server.text


def test_health_path_turns_503_at_the_drain_start_and_the_server_serves_through_drain_delay(events: Events) -> None:
    delay = 1.5
    flags = ("--health-path", "/healthz", "--liveness-path", "/livez", "--drain-delay", str(delay))
    with serve(APP, *flags, events=events) as server:
        assert server.port is not None
        port = server.port
        assert http_get(port, "/healthz")[::2] == (200, b"ok\n")
        assert http_get(port, "/healthz", "HEAD")[2] == b""
        assert http_get(port, "/livez")[0] == 200

        kept = socket.create_connection(("127.0.0.1", port), timeout=10)  # a keep-alive connection

        async def scenario() -> tuple[float, int | None, list[int], int, float]:
            ws = await connect(f"{server.ws_url}/ws/idle/", ping_interval=None)
            signalled = time.monotonic()
            stopping = asyncio.ensure_future(asyncio.to_thread(stop_timed, server, signal.SIGTERM, 15.0))
            await asyncio.to_thread(server.wait_for, re.compile(rb"Draining: the health path answers 503"))
            # during drain_delay: health 503, liveness 200, new connections served, the socket open
            during = [
                (await asyncio.to_thread(http_get, port, "/healthz"))[0],
                (await asyncio.to_thread(http_get, port, "/livez"))[0],
                (await asyncio.to_thread(http_get, port, "/tasks"))[0],
            ]
            # a keep-alive connection is answered with connection: close, so none is idle
            # when the closing starts (a proxy's request would meet a closing socket)
            kept.sendall(b"GET /tasks HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await asyncio.to_thread(kept.recv, 65536)
            assert b"connection: close" in answer.lower(), answer
            assert ws.close_code is None
            await asyncio.wait_for(ws.wait_closed(), 10)
            closed_after = time.monotonic() - signalled
            rc, took = await stopping
            return closed_after, ws.close_code, during, rc, took

        with kept:
            closed_after, code, during, rc, took = asyncio.run(scenario())
    assert during == [503, 200, 200]
    assert code == 1012
    assert closed_after >= delay
    assert rc == 0, server.text
    assert took < delay + 3.0


def test_drain_spread_closes_websockets_at_moments_spread_over_the_window(events: Events) -> None:
    n, spread = 60, 2.0
    with serve(APP, "--no-access-log", "--drain-spread", str(spread), events=events) as server:
        assert server.port is not None

        async def scenario() -> tuple[list[float], list[int | None], int]:
            clients = [await connect(f"{server.ws_url}/ws/idle/", ping_interval=None) for _ in range(n)]
            start = time.monotonic()
            stopping = asyncio.ensure_future(asyncio.to_thread(stop_timed, server, signal.SIGTERM, 15.0))

            async def closed_at(ws: object) -> float:
                await ws.wait_closed()  # type: ignore[attr-defined]
                return time.monotonic() - start

            moments = await asyncio.wait_for(asyncio.gather(*(closed_at(ws) for ws in clients)), 15)
            rc, _ = await stopping
            return sorted(moments), [ws.close_code for ws in clients], rc

        moments, codes, rc = asyncio.run(scenario())
    print(f"{n} WebSockets, drain_spread {spread}s: closes from {moments[0]:.2f}s to {moments[-1]:.2f}s")
    assert codes == [1012] * n
    assert rc == 0, server.text
    assert moments[-1] - moments[0] > 0.6 * spread, moments  # spread over most of the window
    assert moments[-1] < spread + 0.5, moments  # none after it
    assert f"Drain: {n} WebSocket(s) told to close with 1012" in server.text


def test_a_handshake_in_flight_when_the_drain_begins_is_answered_then_closed_with_1012(events: Events) -> None:
    """The drain lets the app answer a handshake it is working on, as it lets an HTTP
    request finish: the client gets its 101 and then a 1012, which clients reconnect on,
    not a 503 that a browser cannot tell from a crash."""
    with serve(APP, events=events) as server:
        assert server.port is not None
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /ws/accept-on-drain/ HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        server.wait_for(re.compile(rb"event: handshake in flight"))
        with sock:
            server.signal(signal.SIGTERM)
            data = b""
            while len(data.partition(b"\r\n\r\n")[2]) < 4 and (chunk := sock.recv(4096)):
                data += chunk
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), data
        # one close frame from the server: opcode 8, then its code
        assert frames[0] == 0x88, frames
        assert int.from_bytes(frames[2:4], "big") == 1012
        assert server.wait() == 0, server.text
    assert events.count("accept-on-drain got websocket.disconnect 1012") == 1
