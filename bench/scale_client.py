"""The client of ``bench/scale.py``: one process that holds thousands of WebSockets cheaply.

An ``asyncio.Protocol`` per connection (uvloop when installed), no WebSocket library: a
handshake written by hand, a frame reader (:func:`split_frames`, :class:`MessageReader`)
and masked client frames (:func:`client_frame`). Every connection answers a ping with a
pong, as a browser does, and a close frame with a close frame.

Connections come in two kinds:

- Channels (``/ws/idle``, ``/ws/subscribed``): ready at the 101, or once ``expect``
  messages have arrived. With ``deflate`` the handshake offers permessage-deflate as
  Chrome does (``permessage-deflate; client_max_window_bits``); compressed frames (RSV1)
  are inflated per RFC 7692 with one ``zlib.decompressobj`` per connection, kept between
  messages unless the server resets its context per message (``server_no_context_takeover``).
- GraphQL (``/graphql``, graphql-transport-ws): ``connection_init``, then on
  ``connection_ack`` one ``subscribe`` to ``feed(topic)``; ready at its ``seq 0`` result.
  Every later result counts as one delivery of that ``seq``.

The harness drives it with one JSON object per line on stdin and reads one JSON line per
command on stdout:

- ``{"cmd": "open", "ports": [...], "path": ..., "count": N, "concurrency": C,
  "timeout": S, "expect": K, "deflate": bool, "graphql": bool}``: open N more connections
  (spread over ``ports``), at most C unfinished at a time (0: all at once); answers how many
  became ready, the failures by kind (``refused``, ``reset``, ``closed``, ``timeout``,
  ``http-NNN``, ``errno-N``), and the times to ready.
- ``{"cmd": "stats"}``: open connections, pings answered, messages, closes by code.
- ``{"cmd": "fanout", "port": P, "topic": T, "mutations": M, "timeout": S}``: M times:
  POST ``publish`` to ``/graphql`` on a new connection and wait until every subscriber
  has that ``seq``; answers the time from the POST to the last (and first) delivery.
- ``{"cmd": "drop"}``: reset every connection (for a warm-up); ``{"cmd": "exit"}``.

Every socket closes with SO_LINGER 0 (a reset): thousands of closes leave no TIME_WAIT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import resource
import socket
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

#: A fixed key: the server's accept value is known in advance.
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = base64.b64encode(hashlib.sha1(WS_KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
MASK = b"\x37\xfa\x21\x3d"
#: What Chrome offers.
CHROME_DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"
GRAPHQL_SUBPROTOCOL = "graphql-transport-ws"
LINGER_RESET = struct.pack("ii", 1, 0)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The server sent something a WebSocket client must refuse."""


# -- the pure parts: handshake, frames, messages --------------------------------------------
def handshake_request(path: str, port: int, *, deflate: bool = False, subprotocol: str | None = None) -> bytes:
    """The opening handshake of a browser-like client."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        f"Origin: http://127.0.0.1:{port}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {WS_KEY.decode()}",
        "User-Agent: bench-scale",
    ]
    if deflate:
        lines.append(f"Sec-WebSocket-Extensions: {CHROME_DEFLATE_OFFER}")
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names lowercased; repeated ones joined with ", ") of a response
    head without its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), headers


class Deflate(NamedTuple):
    """permessage-deflate as the server accepted it."""

    reset_per_message: bool  # server_no_context_takeover
    window_bits: int  # server_max_window_bits, 15 when absent


def negotiated_deflate(extensions: str | None) -> Deflate | None:
    """The server's answer to the permessage-deflate offer, from its
    ``Sec-WebSocket-Extensions`` header; None when it did not accept it."""
    for extension in (extensions or "").split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        reset = False
        bits = 15
        for param in params:
            key, _, value = param.partition("=")
            key = key.strip().lower()
            if key == "server_no_context_takeover":
                reset = True
            elif key == "server_max_window_bits":
                bits = int(value.strip().strip('"'))
        return Deflate(reset, bits)
    return None


class Frame(NamedTuple):
    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes


def mask(payload: bytes, key: bytes = MASK) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (masking and unmasking are the same)."""
    size = len(payload)
    if not size:
        return b""
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + MASK + mask(payload)


def split_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """The complete frames at the start of ``data`` and the bytes left after them."""
    frames: list[Frame] = []
    pos = 0
    end = len(data)
    while end - pos >= 2:
        first = data[pos]
        second = data[pos + 1]
        size = second & 0x7F
        head = 2
        if size == 126:
            if end - pos < 4:
                break
            size = int.from_bytes(data[pos + 2 : pos + 4], "big")
            head = 4
        elif size == 127:
            if end - pos < 10:
                break
            size = int.from_bytes(data[pos + 2 : pos + 10], "big")
            head = 10
        masked = second & 0x80
        if masked:
            head += 4
        stop = pos + head + size
        if stop > end:
            break
        payload = data[pos + head : stop]
        if masked:
            payload = mask(payload, data[pos + head - 4 : pos + head])
        frames.append(Frame(bool(first & 0x80), bool(first & 0x40), first & 0x0F, payload))
        pos = stop
    return frames, data[pos:]


class MessageReader:
    """Frames in, whole messages and control frames out: ``(opcode, payload)``, text and
    binary messages reassembled from their fragments and inflated when compressed."""

    __slots__ = ("buf", "compressed", "deflate", "inflater", "opcode", "parts")

    def __init__(self, deflate: Deflate | None = None) -> None:
        self.deflate = deflate
        self.inflater: Any = None  # made at the first compressed message
        self.buf = b""
        self.parts: list[bytes] = []
        self.opcode = 0
        self.compressed = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        frames, self.buf = split_frames(self.buf + data if self.buf else data)
        out: list[tuple[int, bytes]] = []
        for fin, rsv1, opcode, payload in frames:
            if opcode >= OP_CLOSE:
                out.append((opcode, payload))
                continue
            if opcode != OP_CONT:
                if self.parts:
                    raise ProtocolError("a new message began inside a fragmented one")
                if rsv1 and self.deflate is None:
                    raise ProtocolError("a compressed frame without permessage-deflate")
                self.opcode = opcode
                self.compressed = rsv1
            elif not self.parts:
                raise ProtocolError("a continuation frame outside a message")
            self.parts.append(payload)
            if fin:
                whole = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
                self.parts = []
                out.append((self.opcode, self.inflate(whole) if self.compressed else whole))
        return out

    def inflate(self, data: bytes) -> bytes:
        assert self.deflate is not None
        if self.inflater is None:
            self.inflater = zlib.decompressobj(-self.deflate.window_bits)
        try:
            message: bytes = self.inflater.decompress(data + DEFLATE_TAIL)
        except zlib.error as exc:
            raise ProtocolError(f"bad compressed message: {exc}") from None
        if self.deflate.reset_per_message or self.inflater.eof:
            self.inflater = None
        return message


def seq_of(message: bytes) -> int | None:
    """The ``seq`` of a graphql-transport-ws ``next`` message of ``feed``, else None."""
    start = message.find(b'"seq":')
    if start < 0 or b'"next"' not in message:
        return None
    start += 6
    while message[start : start + 1] == b" ":
        start += 1
    stop = start
    while stop < len(message) and message[stop : stop + 1].isdigit():
        stop += 1
    return int(message[start:stop]) if stop > start else None


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` (nearest rank)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered) - 1e-9) - 1)]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1]}


# -- connections ----------------------------------------------------------------------------
HANDSHAKE, OPEN, CLOSED = 0, 1, 2


class Batch:
    """One ``open`` command: its connections until each is ready or failed."""

    def __init__(self, count: int, expect: int, graphql: bool) -> None:
        self.count = count
        self.expect = expect
        self.graphql = graphql
        self.start = time.monotonic()
        self.pending = count
        self.ready_times: list[float] = []
        self.failures: Counter[str] = Counter()
        self.first_error = ""
        self.done = asyncio.get_running_loop().create_future()
        self.slots: asyncio.Semaphore | None = None
        self.deflate = 0
        self.extensions = ""

    def finish(self, error: str | None, detail: str = "") -> None:
        if error is None:
            self.ready_times.append(time.monotonic() - self.start)
        else:
            self.failures[error] += 1
            if not self.first_error:
                self.first_error = f"{error}: {detail}" if detail else error
        self.pending -= 1
        if self.slots is not None:
            self.slots.release()
        if self.pending <= 0 and not self.done.done():
            self.done.set_result(None)


class Connection(asyncio.Protocol):
    __slots__ = ("batch", "buf", "client", "got", "reader", "state", "transport")

    def __init__(self, client: Client, batch: Batch, request: bytes) -> None:
        self.client = client
        self.batch: Batch | None = batch
        self.buf = request  # the handshake to send, then the response head read so far
        self.state = HANDSHAKE
        self.reader: MessageReader | None = None
        self.transport: Any = None
        self.got = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        transport.write(self.buf)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        try:
            if self.state == HANDSHAKE:
                data = self.handshake(data)
                if not data:
                    return
            if self.reader is not None:
                for opcode, payload in self.reader.feed(data):
                    self.on_message(opcode, payload)
        except ProtocolError as exc:
            self.fail("protocol", str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == OPEN:
            self.client.lost += 1
        self.state = CLOSED
        self.client.connections.discard(self)
        if self.batch is not None:
            self.end("reset" if exc is not None else "closed", str(exc or "EOF before ready"))

    # -- the WebSocket
    def handshake(self, data: bytes) -> bytes:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self.fail("protocol", "response head over 64 KiB")
            return b""
        status, headers = parse_response_head(self.buf[:end])
        rest = self.buf[end + 4 :]
        self.buf = b""
        if status != 101:
            self.fail(f"http-{status}", "")
            return b""
        if headers.get("sec-websocket-accept", "").encode() != WS_ACCEPT:
            self.fail("protocol", "wrong Sec-WebSocket-Accept")
            return b""
        deflate = negotiated_deflate(headers.get("sec-websocket-extensions"))
        self.reader = MessageReader(deflate)
        self.state = OPEN
        self.client.connections.add(self)
        batch = self.batch
        if batch is not None:
            if deflate is not None:
                batch.deflate += 1
                batch.extensions = headers.get("sec-websocket-extensions", "")
            if batch.graphql:
                self.send_text(b'{"type":"connection_init"}')
            elif batch.expect == 0:
                self.end(None)
        return rest

    def on_message(self, opcode: int, payload: bytes) -> None:
        client = self.client
        if opcode == OP_PING:
            self.transport.write(client_frame(OP_PONG, payload))
            client.pings += 1
            return
        if opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            client.closes[code] += 1
            if self.state == OPEN:
                self.transport.write(client_frame(OP_CLOSE, payload[:2]))
            self.state = CLOSED
            self.transport.close()
            if self.batch is not None:
                self.end("closed", f"close frame {code}")
            return
        if opcode == OP_PONG:
            return
        client.messages += 1
        batch = self.batch
        if batch is not None and batch.graphql:
            self.graphql_setup(payload)
        elif batch is not None:
            self.got += 1
            if self.got >= batch.expect:
                self.end(None)
        elif b'"next"' in payload:
            seq = seq_of(payload)
            if seq is not None:
                client.delivered(seq)
        elif b'"ping"' in payload:
            self.send_text(b'{"type":"pong"}')

    def graphql_setup(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            self.fail("protocol", f"not JSON: {payload[:80]!r}")
            return
        kind = message.get("type")
        if kind == "connection_ack":
            self.send_text(self.client.subscribe)
        elif kind == "next" and message.get("payload", {}).get("data", {}).get("feed", {}).get("seq") == 0:
            self.end(None)
        elif kind == "ping":
            self.send_text(b'{"type":"pong"}')
        elif kind != "pong":
            self.fail("graphql", json.dumps(message)[:200])

    def send_text(self, text: bytes) -> None:
        self.transport.write(client_frame(OP_TEXT, text))

    def end(self, error: str | None, detail: str = "") -> None:
        batch = self.batch
        if batch is not None:
            self.batch = None
            batch.finish(error, detail)

    def fail(self, error: str, detail: str) -> None:
        self.end(error, detail)
        self.abort()

    def abort(self) -> None:
        self.state = CLOSED
        self.client.connections.discard(self)
        if self.transport is not None:
            self.transport.abort()


class Client:
    """Every connection of this process, its counters, and the commands."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.pings = 0
        self.messages = 0
        self.lost = 0
        self.closes: Counter[int] = Counter()
        self.subscribe = b""
        # fan-out: deliveries of the current seq
        self.seq = -1
        self.seq_count = 0
        self.seq_first = 0.0
        self.seq_last = 0.0
        self.seq_target = 0
        self.seq_done: asyncio.Future[None] | None = None

    def delivered(self, seq: int) -> None:
        if seq != self.seq:
            return
        now = time.monotonic()
        if not self.seq_count:
            self.seq_first = now
        self.seq_count += 1
        self.seq_last = now
        if self.seq_count >= self.seq_target and self.seq_done is not None and not self.seq_done.done():
            self.seq_done.set_result(None)

    async def open(self, command: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        count = int(command["count"])
        ports = [int(port) for port in command["ports"]]
        path = str(command["path"])
        graphql = bool(command.get("graphql"))
        if graphql:
            topic = command.get("topic", "scale")
            query = f'subscription {{ feed(topic: "{topic}") {{ seq text }} }}'
            self.subscribe = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}).encode()
        requests = [
            handshake_request(
                path,
                port,
                deflate=bool(command.get("deflate")),
                subprotocol=GRAPHQL_SUBPROTOCOL if graphql else None,
            )
            for port in ports
        ]
        batch = Batch(count, int(command.get("expect", 0)), graphql)
        concurrency = int(command.get("concurrency", 0))
        if concurrency > 0:
            batch.slots = asyncio.Semaphore(concurrency)
        attempts: list[asyncio.Task[None]] = []
        made: list[Connection] = []

        async def attempt(index: int) -> None:
            port = ports[index % len(ports)]
            conn = Connection(self, batch, requests[index % len(ports)])
            made.append(conn)
            try:
                await loop.create_connection(lambda: conn, "127.0.0.1", port)
            except ConnectionRefusedError as exc:
                conn.end("refused", str(exc))
            except ConnectionResetError as exc:
                conn.end("reset", str(exc))
            except TimeoutError as exc:  # the kernel's: no SYN-ACK after its retries
                conn.end("timeout", str(exc))
            except OSError as exc:
                conn.end(f"errno-{exc.errno}", str(exc))

        timeout = float(command.get("timeout", 60))
        deadline = loop.time() + timeout
        with contextlib.suppress(asyncio.TimeoutError):
            for index in range(count):
                if batch.slots is not None:
                    await asyncio.wait_for(batch.slots.acquire(), max(0.0, deadline - loop.time()))
                attempts.append(loop.create_task(attempt(index)))
                if index % 500 == 499:
                    await asyncio.sleep(0)  # let the first ones proceed while the rest start
            if batch.pending > 0:
                await asyncio.wait_for(asyncio.shield(batch.done), max(0.0, deadline - loop.time()))
        launched = len(attempts)
        for task in attempts:
            task.cancel()
        for conn in made:
            if conn.batch is not None:
                conn.fail("timeout", f"not ready within {timeout:.0f}s")
        batch.failures["not-started"] += count - launched
        if not batch.failures["not-started"]:
            del batch.failures["not-started"]
        times = batch.ready_times
        return {
            "ready": len(times),
            "failed": dict(batch.failures),
            "first_error": batch.first_error,
            "elapsed": max(times) if times else time.monotonic() - batch.start,
            "ready_s": quantiles(times),
            "deflate": batch.deflate,
            "extensions": batch.extensions,
            "open": len(self.connections),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "open": len(self.connections),
            "pings": self.pings,
            "messages": self.messages,
            "lost": self.lost,
            "closes": {str(code): count for code, count in self.closes.items()},
        }

    async def fanout(self, command: dict[str, Any]) -> dict[str, Any]:
        port = int(command["port"])
        topic = str(command.get("topic", "scale"))
        timeout = float(command.get("timeout", 60))
        pause = float(command.get("pause", 0.2))
        text = str(command.get("text", "x" * 100))
        first_seq = int(command.get("first_seq", 1))
        subscribers = len(self.connections)
        results: list[dict[str, Any]] = []
        for seq in range(first_seq, first_seq + int(command["mutations"])):
            loop = asyncio.get_running_loop()
            self.seq, self.seq_count, self.seq_target = seq, 0, subscribers
            self.seq_done = loop.create_future()
            body = json.dumps(
                {
                    "query": "mutation($t: String!, $s: Int!, $x: String!) { publish(topic: $t, seq: $s, text: $x) }",
                    "variables": {"t": topic, "s": seq, "x": text},
                }
            ).encode()
            start = time.monotonic()
            answer = await post(port, "/graphql", body, timeout)
            answered = time.monotonic() - start
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.seq_done), max(0.1, timeout - answered))
            ok = b'"publish"' in answer and b'"errors"' not in answer
            results.append(
                {
                    "seq": seq,
                    "delivered": self.seq_count,
                    "answered_s": answered,
                    "first_s": self.seq_first - start if self.seq_count else None,
                    "last_s": self.seq_last - start if self.seq_count else None,
                    "ok": ok,
                    "answer": "" if ok else answer[:300].decode("latin-1"),
                }
            )
            await asyncio.sleep(pause)
        self.seq = -1
        return {"subscribers": subscribers, "mutations": results}

    def drop(self) -> dict[str, Any]:
        dropped = len(self.connections)
        for conn in list(self.connections):
            conn.abort()
        return {"dropped": dropped}


async def post(port: int, path: str, body: bytes, timeout: float) -> bytes:
    """A POST on a connection of its own (``Connection: close``), read to its end."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"connect failed: {exc}".encode()
    try:
        writer.write(head + body)
        return await asyncio.wait_for(reader.read(), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"no answer: {exc!r}".encode()
    finally:
        writer.close()


def raise_nofile() -> int:
    """The soft limit of open files up to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(write: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = Client()
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        name = command.get("cmd")
        try:
            if name == "open":
                answer = await client.open(command)
            elif name == "stats":
                answer = client.stats()
            elif name == "fanout":
                answer = await client.fanout(command)
            elif name == "drop":
                answer = client.drop()
            elif name == "exit":
                client.drop()
                return
            else:
                answer = {"error": f"unknown command {name!r}"}
        except Exception as exc:  # answered, so the harness reports it instead of waiting
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        write(json.dumps(answer))


def main() -> int:
    raise_nofile()
    runner: Callable[..., Any] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run

    def write(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    runner(serve(write))
    return 0


if __name__ == "__main__":
    sys.exit(main())
