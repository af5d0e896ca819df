"""The load generator: a separate process that drives one server through one workload.

It must cost little per operation and the same for every server, so it uses raw
blocking sockets read through one ``selectors`` loop, requests and WebSocket frames built
once at import (client frames masked with a fixed key), and a minimal response parser
(status, ``content-length``, byte counting; a fast path for the exact echo frame).
Every connection has one operation in flight: a request waits for its response, a
WebSocket message for its echo. Loopback only.

One run: connect, warm up, snapshot the server's CPU time (user + sys, psutil), run the
timed phase until ``--max-ops`` operations or ``--seconds`` have passed, wait for the
operations in flight, snapshot again, print one JSON line. ``bench/run.py`` runs it once
per repetition; ``--profile-control`` brackets the timed phase with the requests that
turn the profiler of ``bench/profiled.py`` on and off.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil  # type: ignore[import-untyped]

HOST = "127.0.0.1"

HTTP_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
POST_SIZE = 65536
HTTP_POST = (
    b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % POST_SIZE
) + b"p" * POST_SIZE
HTTP_STREAM = b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

WS_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
WS_MESSAGE = "a small websocket echo message!!"
MASK = b"\x37\xfa\x21\x3d"

#: The request bytes of each HTTP workload.
HTTP_REQUESTS = {"http": HTTP_GET, "post64k": HTTP_POST, "stream1m": HTTP_STREAM}
WORKLOADS = ("http", "ws", "post64k", "stream1m")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked with :data:`MASK` (payloads under 64 KiB)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


WS_FRAME = client_frame(0x1, WS_MESSAGE.encode())
#: The server's echo of :data:`WS_FRAME`: unmasked, same payload.
WS_ECHO = bytes([0x81, len(WS_MESSAGE)]) + WS_MESSAGE.encode()


class BenchError(RuntimeError):
    """The server answered something the benchmark did not expect."""


class HTTPClient:
    """One keep-alive connection; :meth:`feed` returns 1 when a response is complete."""

    __slots__ = ("buf", "need", "request", "sock")

    def __init__(self, sock: socket.socket, request: bytes) -> None:
        self.sock = sock
        self.request = request
        self.buf = b""
        self.need = -1  # body bytes still to come; -1 while reading the head

    def send(self) -> None:
        self.sock.sendall(self.request)

    def feed(self, data: bytes) -> int:
        need = self.need
        if need >= 0:
            need -= len(data)
            if need > 0:
                self.need = need
                return 0
            if need < 0:
                raise BenchError("more bytes than the content-length said")
            self.need = -1
            return 1
        if self.buf:
            data = self.buf + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf = data
            return 0
        self.buf = b""
        if data[9:12] != b"200":
            raise BenchError(f"unexpected response: {data[:200]!r}")
        head = data[:end].lower()
        start = head.find(b"\ncontent-length:")
        if start < 0:
            raise BenchError(f"response without content-length: {head[:300]!r}")
        stop = head.find(b"\r", start + 16)
        need = int(head[start + 16 : stop if stop >= 0 else None]) - (len(data) - end - 4)
        if need == 0:
            return 1
        if need < 0:
            raise BenchError("more bytes than the content-length said")
        self.need = need
        return 0


class WSClient:
    """One WebSocket connection; :meth:`feed` returns the number of echoes completed."""

    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        sock.sendall(WS_HANDSHAKE)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError(f"connection closed during the handshake: {data!r}")
            data += chunk
        end = data.index(b"\r\n\r\n")
        if data[9:12] != b"101":
            raise BenchError(f"handshake refused: {data[:300]!r}")
        self.buf = data[end + 4 :]

    def send(self) -> None:
        self.sock.sendall(WS_FRAME)

    def feed(self, data: bytes) -> int:
        if data == WS_ECHO and not self.buf:
            return 1
        data = self.buf + data
        done = 0
        while len(data) >= 2:
            opcode = data[0] & 0x0F
            size = data[1] & 0x7F
            offset = 2
            if size == 126:
                if len(data) < 4:
                    break
                size = int.from_bytes(data[2:4], "big")
                offset = 4
            elif size == 127:
                if len(data) < 10:
                    break
                size = int.from_bytes(data[2:10], "big")
                offset = 10
            if len(data) < offset + size:
                break
            payload = data[offset : offset + size]
            data = data[offset + size :]
            if opcode == 0x1 or opcode == 0x2:
                if payload != WS_MESSAGE.encode():
                    raise BenchError(f"wrong echo: {payload[:100]!r}")
                done += 1
            elif opcode == 0x9:
                self.sock.sendall(client_frame(0xA, payload))
            elif opcode == 0x8:
                raise BenchError(f"server closed the WebSocket: {payload!r}")
        self.buf = data
        return done


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def one_request(port: int, path: str) -> None:
    """A single ``GET path`` on its own connection, read to its end."""
    with connect(port) as sock:
        client = HTTPClient(sock, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
        client.send()
        while True:
            data = sock.recv(65536)
            if not data:
                raise BenchError(f"no response to {path}")
            if client.feed(data):
                return


def drive(clients: list[Any], max_ops: int, seconds: float) -> int:
    """Keep one operation in flight per client until ``max_ops`` were started or
    ``seconds`` passed; then wait for those in flight. Returns the operations completed."""
    monotonic = time.monotonic
    deadline = monotonic() + seconds
    hard_deadline = deadline + 60.0
    sel = selectors.DefaultSelector()
    started = 0
    for client in clients:
        sel.register(client.sock, selectors.EVENT_READ, client)
        if started < max_ops:
            client.send()
            started += 1
    in_flight = started
    completed = 0
    more = True
    try:
        while in_flight:
            events = sel.select(5.0)
            if not events and monotonic() > hard_deadline:
                raise BenchError(f"{in_flight} operations still unanswered after {seconds + 60:.0f}s")
            for key, _ in events:
                client = key.data
                data = client.sock.recv(262144)
                if not data:
                    raise BenchError("the server closed a connection")
                done = client.feed(data)
                if done:
                    completed += done
                    in_flight -= done
                    if more and (started >= max_ops or monotonic() >= deadline):
                        more = False
                    if more:
                        client.send()
                        started += 1
                        in_flight += 1
    finally:
        sel.close()
    return completed


def open_clients(port: int, workload: str, connections: int) -> list[Any]:
    if workload == "ws":
        return [WSClient(connect(port)) for _ in range(connections)]
    request = HTTP_REQUESTS[workload]
    return [HTTPClient(connect(port), request) for _ in range(connections)]


def close_clients(clients: list[Any], workload: str) -> None:
    for client in clients:
        try:
            if workload == "ws":
                client.sock.sendall(client_frame(0x8, (1000).to_bytes(2, "big")))
        except OSError:
            pass
        client.sock.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = psutil.Process(args.pid)
    clients = open_clients(args.port, args.workload, args.connections)
    try:
        warm = drive(clients, args.warmup, 60.0) if args.warmup else 0
        if args.profile_control:
            one_request(args.port, "/__profile/start")
        cpu_before = server.cpu_times()
        client_before = time.process_time()
        wall_before = time.perf_counter()
        ops = drive(clients, args.max_ops, args.seconds)
        wall = time.perf_counter() - wall_before
        client_cpu = time.process_time() - client_before
        cpu_after = server.cpu_times()
        if args.profile_control:
            one_request(args.port, "/__profile/stop")
    finally:
        close_clients(clients, args.workload)
    return {
        "workload": args.workload,
        "connections": args.connections,
        "warmup_ops": warm,
        "ops": ops,
        "wall": wall,
        "server_user": cpu_after.user - cpu_before.user,
        "server_sys": cpu_after.system - cpu_before.system,
        "server_cpu": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        "client_cpu": client_cpu,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Drive one server through one workload; print one JSON line.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="The server process whose CPU time is measured.")
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=300, help="Operations before the timed phase.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Length of the timed phase.")
    parser.add_argument("--max-ops", type=int, default=200_000, help="Upper bound of timed operations.")
    parser.add_argument("--profile-control", action="store_true", help="GET /__profile/start and /stop around it.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (BenchError, OSError) as exc:
        print(f"load: {args.workload}: {exc}", file=sys.stderr)
        return 1
    out(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
