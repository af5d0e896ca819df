"""The load generator: a separate process that drives one server through one workload.

It must cost little per operation and the same for every server, so it uses raw
blocking sockets read through one ``selectors`` loop, requests and WebSocket frames built
once at import (client frames masked with a fixed key), and a minimal response parser
(status, ``content-length``, byte counting; a fast path for the exact echo frame).
Every connection has one operation in flight: a request waits for its response, a
WebSocket message for its echo. Loopback only.

The Channels workloads (served by ``bench.djproject.asgi:application``, see
``bench/djproject/``) drive the same way where they can: ``dj-view`` is ``http`` against a
Django view, ``ch-echo`` is ``ws`` against an ``AsyncWebsocketConsumer``. Two have drivers
of their own: ``ch-connect`` (each client opens a WebSocket, reads the 101, sends a close
frame, reads the server's close and its end of the TCP stream, then opens the next one;
the client's socket is closed with a reset, so neither side piles up TIME_WAIT sockets) and
``ch-fanout-mem``/``ch-fanout-redis`` (``--connections`` subscribers and one trigger
connection; one trigger message makes the consumer ``group_send`` to all subscribers; an
operation is one delivery to one subscriber, and the next trigger goes out once every
subscriber has read its frame).

One run: connect, warm up, snapshot the server's CPU time (user + sys of the process and
its children, psutil: Granian serves from a child process), run the timed phase until
``--max-ops`` operations or ``--seconds`` have passed, wait for the operations in flight,
snapshot again, print one JSON line. ``bench/run.py`` runs it once
per repetition; ``--profile-control`` brackets the timed phase with the requests that
turn the profiler of ``bench/profiled.py`` on and off.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import struct
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


def ws_handshake(path: bytes) -> bytes:
    return (
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ) % path


WS_HANDSHAKE = ws_handshake(b"/ws")
CH_ECHO_HANDSHAKE = ws_handshake(b"/ws/echo")
#: Per fan-out workload: the channel layer alias of ``bench/djproject/settings.py``.
FANOUT_LAYERS = {"ch-fanout-mem": b"default", "ch-fanout-redis": b"redis"}
WS_MESSAGE = "a small websocket echo message!!"
MASK = b"\x37\xfa\x21\x3d"

#: The request bytes of each HTTP workload.
HTTP_REQUESTS = {"http": HTTP_GET, "post64k": HTTP_POST, "stream1m": HTTP_STREAM, "dj-view": HTTP_GET}
#: Served by the raw app, ``bench.apps:app``.
RAW_WORKLOADS = ("http", "ws", "post64k", "stream1m")
#: Served by the Django + Channels project, ``bench.djproject.asgi:application``.
CHANNELS_WORKLOADS = ("ch-connect", "ch-echo", "ch-fanout-mem", "ch-fanout-redis", "dj-view")
WORKLOADS = RAW_WORKLOADS + CHANNELS_WORKLOADS


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
WS_CLOSE = client_frame(0x8, (1000).to_bytes(2, "big"))


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

    def __init__(self, sock: socket.socket, handshake: bytes = WS_HANDSHAKE) -> None:
        self.sock = sock
        self.buf = b""
        sock.sendall(handshake)
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


class ConnectClient:
    """``ch-connect``: one WebSocket per operation, opened and closed.

    :meth:`start` connects and sends the handshake; :meth:`feed` takes the 101, answers it
    with a close frame, takes the server's close frame and then its end of the stream
    (``b""``), and returns 1. The socket closes with SO_LINGER 0 (a reset, after the server
    already closed its side), so no TIME_WAIT socket is left on the client's side."""

    __slots__ = ("buf", "port", "sock", "state")

    HANDSHAKE, CLOSING, EOF = 0, 1, 2

    def __init__(self, port: int) -> None:
        self.port = port
        self.buf = b""
        self.state = self.HANDSHAKE
        self.sock: socket.socket = None  # type: ignore[assignment]

    def start(self) -> None:
        self.sock = connect(self.port)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.state = self.HANDSHAKE
        self.buf = b""
        self.sock.sendall(CH_ECHO_HANDSHAKE)

    def finish(self) -> None:
        self.sock.close()

    def feed(self, data: bytes) -> int:
        if not data:
            if self.state != self.EOF:
                raise BenchError(f"the server closed the connection early (state {self.state})")
            return 1
        data = self.buf + data
        if self.state == self.HANDSHAKE:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return 0
            if data[9:12] != b"101":
                raise BenchError(f"handshake refused: {data[:300]!r}")
            data = data[end + 4 :]
            self.state = self.CLOSING
            self.sock.sendall(WS_CLOSE)
        if self.state == self.CLOSING:
            while len(data) >= 2:
                size = data[1] & 0x7F
                if size >= 126:
                    raise BenchError(f"unexpected frame from the server: {data[:20]!r}")
                if len(data) < 2 + size:
                    break
                opcode = data[0] & 0x0F
                data = data[2 + size :]
                if opcode == 0x8:
                    self.state = self.EOF
                    break
        self.buf = data
        return 0


_LINGER_RESET = struct.pack("ii", 1, 0)


def drive_connect(clients: list[ConnectClient], max_ops: int, seconds: float) -> int:
    """:func:`drive` for :class:`ConnectClient`, whose socket is new for each operation."""
    monotonic = time.monotonic
    deadline = monotonic() + seconds
    hard_deadline = deadline + 60.0
    sel = selectors.DefaultSelector()
    started = completed = 0
    in_flight: set[ConnectClient] = set()
    try:
        for client in clients[:max_ops]:
            client.start()
            sel.register(client.sock, selectors.EVENT_READ, client)
            in_flight.add(client)
            started += 1
        more = started < max_ops
        while in_flight:
            events = sel.select(5.0)
            if not events and monotonic() > hard_deadline:
                raise BenchError(f"{len(in_flight)} connections still open after {seconds + 60:.0f}s")
            for key, _ in events:
                client = key.data
                if not client.feed(client.sock.recv(65536)):
                    continue
                sel.unregister(client.sock)
                client.finish()
                completed += 1
                if more and (started >= max_ops or monotonic() >= deadline):
                    more = False
                if more:
                    client.start()
                    sel.register(client.sock, selectors.EVENT_READ, client)
                    started += 1
                else:
                    in_flight.discard(client)
    finally:
        for client in in_flight:
            client.finish()
        sel.close()
    return completed


class Fanout:
    """``ch-fanout-*``: ``subscribers`` WebSockets that joined the group, and one trigger."""

    def __init__(self, port: int, workload: str, subscribers: int) -> None:
        layer = FANOUT_LAYERS[workload]
        self.trigger = WSClient(connect(port), ws_handshake(b"/ws/fanout/%s/trigger" % layer))
        self.subscribers: list[WSClient] = []
        for _ in range(subscribers):
            self.subscribers.append(WSClient(connect(port), ws_handshake(b"/ws/fanout/%s/subscriber" % layer)))
        # Each consumer joins the group before it accepts, so every subscriber is in the
        # group by now; the Redis layer's SUBSCRIBE went out with the first one.

    @property
    def all(self) -> list[WSClient]:
        return [self.trigger, *self.subscribers]


def drive_fanout(fanout: Fanout, max_ops: int, seconds: float) -> int:
    """Trigger, read every subscriber's frame, repeat: at least one round, then rounds until
    ``max_ops`` deliveries or ``seconds``. Returns the deliveries."""
    monotonic = time.monotonic
    deadline = monotonic() + seconds
    subscribers = fanout.subscribers
    sel = selectors.DefaultSelector()
    for client in subscribers:
        sel.register(client.sock, selectors.EVENT_READ, client)
    completed = 0
    try:
        while True:
            fanout.trigger.send()
            waiting = len(subscribers)
            hard_deadline = monotonic() + 60.0
            while waiting:
                events = sel.select(5.0)
                if not events and monotonic() > hard_deadline:
                    raise BenchError(f"{waiting} of {len(subscribers)} subscribers got nothing within 60s")
                for key, _ in events:
                    client = key.data
                    data = client.sock.recv(65536)
                    if not data:
                        raise BenchError("the server closed a subscriber's connection")
                    done = client.feed(data)
                    if done > 1:
                        raise BenchError(f"a subscriber got {done} frames for one trigger")
                    waiting -= done
            completed += len(subscribers)
            if completed >= max_ops or monotonic() >= deadline:
                return completed
    finally:
        sel.close()


def open_clients(port: int, workload: str, connections: int) -> Any:
    if workload == "ws":
        return [WSClient(connect(port)) for _ in range(connections)]
    if workload == "ch-echo":
        return [WSClient(connect(port), CH_ECHO_HANDSHAKE) for _ in range(connections)]
    if workload == "ch-connect":
        return [ConnectClient(port) for _ in range(connections)]
    if workload in FANOUT_LAYERS:
        return Fanout(port, workload, connections)
    request = HTTP_REQUESTS[workload]
    return [HTTPClient(connect(port), request) for _ in range(connections)]


def drive_workload(clients: Any, workload: str, max_ops: int, seconds: float) -> int:
    if workload == "ch-connect":
        return drive_connect(clients, max_ops, seconds)
    if workload in FANOUT_LAYERS:
        return drive_fanout(clients, max_ops, seconds)
    return drive(clients, max_ops, seconds)


def close_clients(clients: Any, workload: str) -> None:
    if workload == "ch-connect":
        return
    if workload in FANOUT_LAYERS:
        clients = clients.all
    for client in clients:
        try:
            if workload == "ws" or workload == "ch-echo" or workload in FANOUT_LAYERS:
                client.sock.sendall(WS_CLOSE)
        except OSError:
            pass
        client.sock.close()


def tree_cpu(server: psutil.Process) -> tuple[float, float]:
    """User and system CPU seconds of ``server`` and its live children."""
    user = system = 0.0
    for proc in [server, *server.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user += times.user
        system += times.system
    return user, system


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    server = psutil.Process(args.pid)
    clients = open_clients(args.port, args.workload, args.connections)
    try:
        warm = drive_workload(clients, args.workload, args.warmup, 60.0) if args.warmup else 0
        if args.profile_control:
            one_request(args.port, "/__profile/start")
        user_before, sys_before = tree_cpu(server)
        client_before = time.process_time()
        wall_before = time.perf_counter()
        ops = drive_workload(clients, args.workload, args.max_ops, args.seconds)
        wall = time.perf_counter() - wall_before
        client_cpu = time.process_time() - client_before
        user_after, sys_after = tree_cpu(server)
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
        "server_user": user_after - user_before,
        "server_sys": sys_after - sys_before,
        "server_cpu": (user_after + sys_after) - (user_before + sys_before),
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
    parser.add_argument("--cpus", default="", help="Comma-separated CPUs this process runs on (default: any).")
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
