"""HTTP/2 floods against one real ``python -m channelserver`` (one process, ``core_app:app``
from tests/apps), each proving the answer of docs/http2.md's "Floods and hostile peers"
table *and* that nobody else pays for it:

- the attacker gets the documented answer on every connection it floods: GOAWAY with the
  documented error code, then the close; for the zero-window stall (SETTINGS
  INITIAL_WINDOW_SIZE 0, 100 streams to the endless ``/stream``, never a WINDOW_UPDATE):
  HEADERS on every stream, not one DATA byte, no GOAWAY, and each stream reset CANCEL
  once ``--h2-stall-timeout`` passed (the server runs with 1 s so that is seen here);
- a well-behaved client (httpx, HTTP/2 by prior knowledge) requesting ``/hello`` over and
  over *during* the attack, every answer 200, has a p99 latency under 50 ms over at least
  100 requests (the attack goes on until it made them, ``ATTACK_SECONDS`` at least);
- the server's RSS after the attack is within 10 MiB of before (during a stall, within
  what the stalled streams may keep unsent);
- the server logs the flood's WARNING for each flooded connection, up to its bound on
  warnings (20 in 10 s, server-wide: each attack whose log is read waits for a fresh
  window), and nothing at ERROR level, no traceback.

The attacker runs in a process of its own (``multiprocessing``, spawned), on raw sockets,
its frames built once with ``hyperframe`` and ``hpack`` (h2's client refuses to build most
of them), reconnecting as soon as the server closes: it never takes the GIL from the
thread that times the bystander, and spends little CPU of its own. On 2 cores, with a
spin loop on each, the bounds held (p99 at most 35 ms, PRIORITY the slowest); with two
spin loops per core they did not always (p99 50-110 ms for PRIORITY, CONTINUATION, HPACK
bomb, empty DATA).

Every flood meets its bounds. Three did not at first, and the server was changed: a
rapid-reset burst (each flooded connection's 260 HEADERS+RST_STREAM, one read) held the
event loop 25-35 ms (bystander p99 110-210 ms) while every stream got an app; streams
opened and reset in one read now get none, and h2 is given at most 100 frames per
event-loop turn (it reads every frame it is given before it returns one event: 520 small
frames were 15-25 ms of the loop; the bystander's p99 went from 40-87 ms to about 8 ms).
A CONTINUATION flood raised RSS by tens of MiB (h2's buffers of closed connections waited
for the cycle collector); a closed connection now lets them go at once.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import select
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.apps.wire import ERROR_LINE, LogWindow
from tests.servers import ServerProcess, channelserver

pytestmark = pytest.mark.timeout(90)

#: How long each flood goes on, over as many connections as it takes.
ATTACK_SECONDS = 2.0
#: The longest an attack goes on waiting for the bystander's requests (a loaded machine).
ATTACK_MAX = 10.0
#: The bystander's bound, and the fewest requests it must make during the attack.
BYSTANDER_P99 = 0.050
BYSTANDER_MIN_REQUESTS = 100
#: The server logs this many warnings in ``WARNINGS_PER`` seconds, then only their count
#: (``RateLimit`` in channelserver/server/log.py): an attack waits for a fresh window.
WARNINGS_LOGGED = 20
WARNINGS_PER = 10.0
HELD_BACK = re.compile(r"WARNING \(\d+ similar warnings were not logged\)")
#: RSS after an attack may exceed RSS before by this much; a flood known to grow it
#: (``KNOWN_GROWTH``) is still held under ``RUNAWAY``.
RSS_SLACK = 10 << 20
RUNAWAY = 160 << 20
#: The stall test's server setting, and how long its attacker holds its streams.
STALL_TIMEOUT = 1.0
STALL_HOLD = 2.5
STALL_CONNECTIONS = 2
STALL_STREAMS = 100  # the server's h2_max_concurrent_streams
STREAM_BUFFER = 64 << 10  # what a stream may keep unsent (HTTP2Connection.stream_buffer)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HOST = "127.0.0.1"
CALM = ErrorCodes.ENHANCE_YOUR_CALM


# -- the attacker: frames on a raw socket ------------------------------------------------------


def _headers(path: str, method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "flood")]


class Wire:
    """One raw HTTP/2 connection: hand-built frames out, every frame back parsed."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = Encoder()
        self.buffer = b""
        self.frames: list[Frame] = []
        self.eof = False
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, data: bytes) -> bool:
        """False once the server closed (it may close before all of a flood is sent)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def block(self, path: str, method: str = "GET") -> bytes:
        return bytes(self.encoder.encode(_headers(path, method)))

    def read(self, timeout: float) -> list[Frame]:
        """The frames that came: those readable once the first came, within ``timeout``."""
        got: list[Frame] = []
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buffer += chunk
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                got.append(frame)
            if got:  # what is readable now, no more waiting
                deadline = 0.0
        self.frames += got
        return got

    def read_to_goaway(self, timeout: float = 10.0) -> GoAwayFrame | None:
        """Read until the server's GOAWAY (then until it closes), or EOF, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.read(min(0.5, deadline - time.monotonic()))
            goaway = self.goaway()
            if goaway is not None:
                self.read(1.0)  # the close that follows it
                return goaway
        return self.goaway()

    def goaway(self) -> GoAwayFrame | None:
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def close(self) -> None:
        self.sock.close()


def _block(path: str, method: str = "GET") -> bytes:
    """A request's header block, for a connection's first (its HPACK table empty)."""
    return bytes(Encoder().encode(_headers(path, method)))


def _rapid_reset() -> bytes:
    """CVE-2023-44487: streams opened and reset at once, 260 of them (the bound is 200),
    to a route whose app runs on for a second."""
    encoder = Encoder()
    out = bytearray()
    for i in range(260):
        sid = 1 + 2 * i
        block = bytes(encoder.encode(_headers("/slow?ms=1000")))
        out += HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        out += RstStreamFrame(sid, error_code=ErrorCodes.CANCEL).serialize()
    return bytes(out)


def _continuation() -> bytes:
    """CVE-2024-27316: a header block that never ends, 16 KiB CONTINUATION frames (h2
    stops at 64; a server that kept them all would hold 1.6 MiB here)."""
    filler = b"\x00" * 16384
    out = HeadersFrame(1, _block("/hello"), flags=["END_STREAM"]).serialize()
    return out + ContinuationFrame(1, filler).serialize() * 100


def _settings() -> bytes:
    return SettingsFrame(0, settings={0x4: 65535}).serialize() * 150


def _pings() -> bytes:
    return b"".join(PingFrame(0, opaque_data=b"%08d" % i).serialize() for i in range(150))


def _empty_data() -> bytes:
    out = HeadersFrame(1, _block("/body", "POST"), flags=["END_HEADERS"]).serialize()
    return out + DataFrame(1, b"").serialize() * 150


def _priority() -> bytes:
    return b"".join(
        PriorityFrame(1 + 2 * (i % 50), depends_on=0, stream_weight=i % 256).serialize() for i in range(1100)
    )


def _hpack_bomb() -> bytes:
    """A 4 KiB header put in the dynamic table once, then named by its 1-byte index
    16,000 times: 16 KiB on the wire that would decode to 64 MiB."""
    literal = bytes(Encoder().encode([("x-bomb", "b" * 4000)]))  # literal, incremental indexing
    assert literal[0] & 0xC0 == 0x40
    block = b"\x82\x86\x84" + literal + b"\xbe" * 16000  # GET, http, /; then index 62, over and over
    out = HeadersFrame(1, block[:16384], flags=["END_STREAM"]).serialize()
    return out + ContinuationFrame(1, block[16384:], flags=["END_HEADERS"]).serialize()


def _over_long() -> bytes:
    """A DATA frame declaring 16 MiB - 1; only its header and 4 KiB are sent: the answer
    must come from the header."""
    header = (0xFFFFFF).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
    return HeadersFrame(1, _block("/body", "POST"), flags=["END_HEADERS"]).serialize() + header + b"z" * 4096


#: What each flood sends on a fresh connection after the preface (built once: the
#: attacker spends its CPU on nothing but the sockets).
FLOODS: dict[str, Callable[[], bytes]] = {
    "rapid reset": _rapid_reset,
    "CONTINUATION": _continuation,
    "SETTINGS": _settings,
    "PING": _pings,
    "empty DATA": _empty_data,
    "PRIORITY": _priority,
    "HPACK bomb": _hpack_bomb,
    "over-long frame": _over_long,
}


def _flood_connections(kind: str, port: int, stop: Any) -> list[dict[str, Any]]:
    """Flood ``kind`` over fresh connections until ``stop`` is set: what each one got."""
    payload = FLOODS[kind]()
    results = []
    while not stop.is_set() or not results:
        wire = Wire(port)
        try:
            sent = time.monotonic()
            wire.send(payload)
            goaway = wire.read_to_goaway()
            results.append(
                {
                    "goaway": None if goaway is None else int(goaway.error_code),
                    "after_ms": (time.monotonic() - sent) * 1000,
                    "eof": wire.eof,
                    "frames": [type(f).__name__ for f in wire.frames],
                }
            )
        finally:
            wire.close()
    return results


def _stall(port: int, stop: Any) -> list[dict[str, Any]]:
    """Zero-window stall: connections that set SETTINGS_INITIAL_WINDOW_SIZE 0 and open the
    most streams allowed to a response that never ends, then never send WINDOW_UPDATE
    (they ACK the server's SETTINGS and PINGs, as a live client would)."""
    wires = [Wire(port, settings={0x4: 0}) for _ in range(STALL_CONNECTIONS)]
    try:
        for wire in wires:
            frames = []
            while not any(isinstance(f, SettingsFrame) and "ACK" not in f.flags for f in frames):
                frames += wire.read(5.0)
            wire.send(SettingsFrame(0, flags=["ACK"]).serialize())
            wire.send(
                b"".join(
                    HeadersFrame(1 + 2 * i, wire.block("/stream"), flags=["END_HEADERS", "END_STREAM"]).serialize()
                    for i in range(STALL_STREAMS)
                )
            )
        opened = time.monotonic()
        resets: dict[tuple[int, int], float] = {}
        while not stop.is_set():
            for w, wire in enumerate(wires):
                for frame in wire.read(0):
                    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                        wire.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
                    elif isinstance(frame, RstStreamFrame):
                        resets.setdefault((w, frame.stream_id), time.monotonic() - opened)
            time.sleep(0.01)
        results = []
        for w, wire in enumerate(wires):
            frames = wire.frames
            results.append(
                {
                    "headers": len({f.stream_id for f in frames if isinstance(f, HeadersFrame)}),
                    "data_bytes": sum(len(f.data) for f in frames if isinstance(f, DataFrame)),
                    "resets": sorted({int(f.error_code) for f in frames if isinstance(f, RstStreamFrame)}),
                    "reset_count": len({f.stream_id for f in frames if isinstance(f, RstStreamFrame)}),
                    "first_reset_s": min((t for (c, _), t in resets.items() if c == w), default=None),
                    "goaway": None if wire.goaway() is None else int(wire.goaway().error_code),
                    "eof": wire.eof,
                }
            )
        return results
    finally:
        for wire in wires:
            wire.close()


def _attacker(kind: str, port: int, stop: Any, out: Any) -> None:
    """The attacker process: says when it starts, then, once ``stop`` is set, what every
    connection got."""
    try:
        started = time.monotonic()
        out.send(("started", started))
        results = _stall(port, stop) if kind == "stall" else _flood_connections(kind, port, stop)
        out.send(("done", started, time.monotonic(), results))
    except BaseException:
        out.send(("error", traceback.format_exc()))
    finally:
        out.close()


# -- the bystander, the server's memory --------------------------------------------------------


@dataclass
class Bystander:
    """A well-behaved HTTP/2 client in a thread: ``GET /hello`` over and over, each
    request's start and latency kept."""

    url: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def _run(self) -> None:
        with httpx.Client(http1=False, http2=True, base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    response = client.get("/hello")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                took = time.monotonic() - start
                if response.status_code != 200 or response.http_version != "HTTP/2" or response.text != "hello world":
                    self.failures.append(f"{response.http_version} {response.status_code} {response.text[:80]!r}")
                self.samples.append((start, took))
                time.sleep(0.002)

    def __enter__(self) -> Bystander:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)

    def during(self, start: float, end: float) -> list[float]:
        return sorted(took for began, took in self.samples if start <= began <= end)


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def rss(server: ServerProcess) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


@dataclass
class Attack:
    kind: str
    results: list[dict[str, Any]]
    latencies: list[float]
    rss_before: int
    rss_peak: int
    rss_after: int
    log: str

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    def summary(self) -> str:
        mib = 1 << 20
        return (
            f"{self.kind}: {len(self.results)} connections, bystander n={len(self.latencies)} "
            f"p50={self.p50 * 1000:.1f}ms p99={self.p99 * 1000:.1f}ms max={self.latencies[-1] * 1000:.1f}ms, "
            f"RSS before={self.rss_before / mib:.1f} peak={self.rss_peak / mib:.1f} after={self.rss_after / mib:.1f} MiB"
        )


class _warnings:
    """When the server's warning bound starts afresh, at the latest: 10 s after the
    last attack's last warning."""

    fresh_at = 0.0


def run_attack(
    server: ServerProcess, kind: str, seconds: float = ATTACK_SECONDS, settle: float = 1.5, logged: bool = True
) -> Attack:
    """The attack in its own process while the bystander runs, for ``seconds`` and until
    the bystander made ``BYSTANDER_MIN_REQUESTS`` (at most ``ATTACK_MAX``); RSS sampled
    before, all along, and ``settle`` seconds after (the apps the flood started have
    returned).
    ``logged``: its warnings are to be read, so it waits for the warning bound to start
    afresh."""
    assert server.port is not None
    if logged:
        time.sleep(max(0.0, _warnings.fresh_at - time.monotonic()))
    window = LogWindow(server, server.url)
    before = rss(server)
    peak = before
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    process = ctx.Process(target=_attacker, args=(kind, server.port, stop, theirs), name=f"attacker {kind}")
    with Bystander(server.url) as bystander:
        process.start()
        theirs.close()
        try:
            messages = []
            while True:
                if ours.poll(0.05):
                    try:
                        messages.append(ours.recv())
                    except EOFError:
                        break
                peak = max(peak, rss(server))
                if messages and messages[0][0] == "started" and not stop.is_set():
                    began = messages[0][1]
                    now = time.monotonic()
                    enough = len(bystander.during(began, now)) >= BYSTANDER_MIN_REQUESTS
                    if now - began >= ATTACK_MAX or (now - began >= seconds and enough):
                        stop.set()
            process.join(15)
        finally:
            if process.is_alive():
                process.kill()
                process.join()
        last = messages[-1] if messages else ("error", f"attacker exited {process.exitcode} with nothing to say")
        if last[0] != "done":
            pytest.fail(f"the attacker failed:\n{last[1]}")
        _, began, ended, results = last
    if kind != "stall":  # the one that logs no warning
        _warnings.fresh_at = ended + WARNINGS_PER + 0.1
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        peak = max(peak, rss(server))
        time.sleep(0.05)
    after = rss(server)
    attack = Attack(kind, results, bystander.during(began, ended), before, peak, after, window.text())
    print(attack.summary())
    assert not bystander.failures, bystander.failures[:5]
    return attack


def check_bystander_and_memory(attack: Attack, known: list[str]) -> None:
    """Memory flat, the bystander's p99 under the bound; for a flood known to miss one
    (``KNOWN_GROWTH``, ``KNOWN_SLOW``), why and the figures are added to ``known`` (an
    xfail once everything else was checked)."""
    grew = attack.rss_after - attack.rss_before
    if grew >= RSS_SLACK and attack.kind in KNOWN_GROWTH:
        assert grew < RUNAWAY, attack.summary()
        known.append(f"RSS: {KNOWN_GROWTH[attack.kind]}")
    else:
        assert grew < RSS_SLACK, attack.summary()
    slow = len(attack.latencies) < BYSTANDER_MIN_REQUESTS or attack.p99 >= BYSTANDER_P99
    if slow and attack.kind in KNOWN_SLOW:
        known.append(f"latency: {KNOWN_SLOW[attack.kind]}")
    else:
        assert len(attack.latencies) >= BYSTANDER_MIN_REQUESTS, attack.summary()
        assert attack.p99 < BYSTANDER_P99, attack.summary()
    if known:
        known.append(attack.summary())


def check_log(attack: Attack, warning: str) -> None:
    """``warning`` (a regex) for each flooded connection, up to the server's bound on
    warnings (the rest are counted, and the count logged with the next warning let
    through); no other WARNING, nothing worse."""
    lines = attack.log.splitlines()
    assert not [line for line in lines if ERROR_LINE.search(line)], attack.log[-3000:]
    warnings = [line for line in lines if " WARNING " in line]
    if warnings and HELD_BACK.search(warnings[0]):  # the count of an earlier attack's
        warnings = warnings[1:]
    pattern = re.compile(r"WARNING " + warning)
    assert [line for line in warnings if not pattern.search(line)] == [], (warning, warnings[:3])
    assert len(warnings) == min(WARNINGS_LOGGED, len(attack.results)), (len(warnings), len(attack.results))


# -- the server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app", "--workers", "1", "--h2-stall-timeout", str(STALL_TIMEOUT)) as server:
        assert psutil.Process(server.proc.pid).children() == []  # one process serves
        yield server
        # the server is still well after every flood
        assert httpx.get(f"{server.url}/hello", timeout=10).text == "hello world"


# -- the floods --------------------------------------------------------------------------------

PEER = r"127\.0\.0\.1:\d+"

#: kind, the GOAWAY error code, the WARNING (a regex after "WARNING ").
CASES = [
    (
        "rapid reset",
        CALM,
        rf"HTTP/2 flood from {PEER}: \d+ streams reset by the client, \d+ responses completed "
        r"\(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "CONTINUATION",
        ErrorCodes.PROTOCOL_ERROR,
        rf"HTTP/2 protocol error from {PEER}: Too many continuation frames received\. \(sent GOAWAY PROTOCOL_ERROR\)",
    ),
    (
        "SETTINGS",
        CALM,
        rf"HTTP/2 flood from {PEER}: more than 100 SETTINGS frames within 10\.0s \(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "PING",
        CALM,
        rf"HTTP/2 flood from {PEER}: more than 100 PING frames within 10\.0s \(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "empty DATA",
        CALM,
        rf"HTTP/2 flood from {PEER}: more than 100 empty DATA frames within 10\.0s \(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "PRIORITY",
        CALM,
        rf"HTTP/2 flood from {PEER}: more than 1000 PRIORITY frames within 10\.0s \(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "HPACK bomb",
        CALM,
        rf"HTTP/2 protocol error from {PEER}: Oversized header block: .* \(sent GOAWAY ENHANCE_YOUR_CALM\)",
    ),
    (
        "over-long frame",
        ErrorCodes.FRAME_SIZE_ERROR,
        rf"Invalid HTTP/2 frame from {PEER}: a frame of 16777215 bytes, over the 16384 accepted "
        r"\(sent GOAWAY FRAME_SIZE_ERROR\)",
    ),
]


#: Why a flood's bystander is known to miss the p99 bound: none now (rapid reset was, until
#: h2 got its frames a turn's worth at a time).
KNOWN_SLOW: dict[str, str] = {}


#: Why a flood is known to grow the server's RSS past ``RSS_SLACK``: none now. A closed
#: connection's h2 state is in a reference cycle; the frames it buffered (a CONTINUATION
#: flood's) are let go when the connection closes, not when the cycle collector runs.
KNOWN_GROWTH: dict[str, str] = {}


def check_goaways(attack: Attack, code: ErrorCodes) -> None:
    got = [result["goaway"] for result in attack.results]
    assert got == [int(code)] * len(got), (attack.kind, [r for r in attack.results if r["goaway"] != code][:3])
    assert all(result["eof"] for result in attack.results), attack.results[:3]


@pytest.mark.parametrize(("kind", "code", "warning"), CASES, ids=[case[0] for case in CASES])
def test_a_flood_gets_its_goaway_and_costs_the_bystander_nothing(
    server: ServerProcess, kind: str, code: ErrorCodes, warning: str
) -> None:
    attack = run_attack(server, kind)
    check_goaways(attack, code)
    check_log(attack, warning)
    known: list[str] = []
    check_bystander_and_memory(attack, known)
    if known:
        pytest.xfail(" / ".join(known))


def test_a_zero_window_stall_holds_bounded_memory_and_costs_the_bystander_nothing(server: ServerProcess) -> None:
    attack = run_attack(server, "stall", seconds=STALL_HOLD, logged=False)
    for result in attack.results:
        # every stream was answered, not one DATA byte could go, no GOAWAY: the connection
        # lives on, each stream was reset CANCEL once the stall timeout passed
        assert result["headers"] == STALL_STREAMS, result
        assert result["data_bytes"] == 0, result
        assert result["goaway"] is None and not result["eof"], result
        assert result["resets"] == [int(ErrorCodes.CANCEL)] and result["reset_count"] == STALL_STREAMS, result
        assert STALL_TIMEOUT * 0.9 <= result["first_reset_s"] < STALL_TIMEOUT + 1.0, result
    # while stalled, the server held no more than each stream's unsent buffer (and change)
    held = STALL_CONNECTIONS * STALL_STREAMS * STREAM_BUFFER
    assert attack.rss_peak - attack.rss_before < held + RSS_SLACK, attack.summary()
    lines = attack.log.splitlines()
    assert not [line for line in lines if ERROR_LINE.search(line)], attack.log[-3000:]
    assert not [line for line in lines if " WARNING " in line], attack.log[-3000:]
    stalled = re.compile(rf"HTTP/2 stream \d+ of {PEER} got no flow-control window for {STALL_TIMEOUT}s; reset it")
    assert sum(1 for line in lines if stalled.search(line)) == STALL_CONNECTIONS * STALL_STREAMS
    # After the resets the stalled buffers are freed, but the allocator may keep their
    # pages (RSS is a high-water mark): bounded by what the streams were allowed to hold.
    assert attack.rss_after - attack.rss_before < held + RSS_SLACK, attack.summary()
    assert len(attack.latencies) >= BYSTANDER_MIN_REQUESTS, attack.summary()
    assert attack.p99 < BYSTANDER_P99, attack.summary()
