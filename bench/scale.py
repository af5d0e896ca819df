"""``make bench-scale``: how channelserver and its peers hold many WebSockets, in one run.

Peers: channelserver, Daphne, Uvicorn with h11/wsproto, Uvicorn with its defaults
(httptools/websockets, ``uvicorn-std``), Hypercorn and Granian, each started by its own
command line on 127.0.0.1, serving the same app, ``bench/scaleproject`` (Django + Channels
+ Strawberry), at log level warning with access logs off, every other setting at its
default. Each workload runs every server in turn, the order rotated from one workload
(and one fan-out layer) to the next.

Workloads:

- ``idle``: N WebSockets (``--n``, 1,000, 5,000 and 10,000) to an
  ``AsyncWebsocketConsumer`` that joins a group, opened in steps on one worker process.
  The channel layer is Channels' in-memory one with its expiry sweep at most once a
  second (``bench/scaleproject/layers.py``: Channels' own sweeps every channel and group
  member at every receive, which makes each new connection cost O(N) whatever the
  server; ``--stock-memory-layer`` serves it as it is). After each step: resident memory
  per connection, (RSS of the server's processes with N open - RSS before the first) /
  N. At the largest N: the
  server's CPU time per second over a quiet window (25 s, longer than the 20 s ping
  interval of the servers that ping), and the pings each connection answered in it.
- ``subscribed``: the same, but the client offers permessage-deflate as Chrome does and
  each connection has received three 200-byte JSON messages when RSS is read: the
  compression contexts of the servers that accept deflate exist. RSS is read again at the
  end of the window (a server may drop idle contexts).
- ``fanout``: N subscribers (``--fanout-n``, 1,000 and 10,000) of one Strawberry
  subscription over graphql-transport-ws, on two worker processes that share a
  redis-server of this run's own through ``RedisPubSubChannelLayer`` and, in a second
  round, ``RedisChannelLayer``. Ten mutations (an HTTP POST each), one after the other;
  for each, the time from the POST until the last subscriber has the result; and the CPU
  time of every server process (and, apart, of redis-server) over the mutations divided by
  the deliveries. Daphne has no workers option: two Daphne processes on two ports, the
  clients split between them.
- ``storm``: N clients (``--storm-n``, default the largest ``--n``) connect to the idle
  consumer at once, each giving up after 30 s: the time until every one has its 101 (the
  consumer joined its group before it accepted), the times of the median and the 99th
  percentile, and the failures (refused, reset, closed, timeouts, other statuses).

The client (:mod:`bench.scale_client`) is a separate process: raw asyncio protocols, one
per connection, answering pings with pongs. Connections are opened 32 at a time (fewer
than the smallest default listen backlog, Daphne's 50) except in the storm. Every process's limit of open files is raised to its hard limit here, before
anything starts, so the servers inherit it. Every step has a timeout; a server that cannot
hold N is reported at the count it reached ("failed at 7,312") and the run goes on.

Measurements are loopback only, on whatever else the machine is doing: the memory figures
do not mind, the CPU figures do (the load average before and after is in the results).
RSS and CPU time are read from /proc for the server's processes and all their
descendants. Before the first reading each server serves a warm-up of 20 connections of
the workload's kind (closed again), so modules imported on first use are not counted per
connection.

Output: a markdown table per workload, printed and written to
``bench/results/scale-<date>.md``, with every figure in ``scale-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO, Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import revision, source_tree  # noqa: E402
from bench.scale_client import quantiles, raise_nofile  # noqa: E402

PYTHON = sys.executable
APP = "bench.scaleproject.asgi:application"
RESULTS = ROOT / "bench" / "results"
WORKLOADS = ("idle", "subscribed", "fanout", "storm")
LAYERS = ("pubsub", "core")
LAYER_LABELS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
OURS = "channelserver"
LAYER_NOTES = {
    "memory": "Channel layer: Channels' InMemoryChannelLayer with its expiry sweep at most once a second "
    "(bench/scaleproject/layers.py); Channels' own sweeps all channels and groups at every receive, "
    "O(N) per new connection whatever the server.",
    "memory-stock": "Channel layer: Channels' InMemoryChannelLayer as it is (its sweep at every receive "
    "makes each new connection cost O(N)).",
}


class ScaleError(RuntimeError):
    """A step failed or timed out; the message says which and why."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- /proc ----------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcStat(NamedTuple):
    pid: int
    ppid: int
    utime: int  # clock ticks
    stime: int


def parse_stat(text: str) -> ProcStat:
    """The fields of ``/proc/PID/stat`` this harness needs. The command name (field 2) is
    in parentheses and may hold spaces and parentheses itself: fields are counted after the
    last ``)``."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field N is rest[N - 3].
    return ProcStat(pid, int(rest[1]), int(rest[11]), int(rest[12]))


def parse_rss(status: str) -> int:
    """Resident memory in bytes from the ``VmRSS:`` line of ``/proc/PID/status`` (0 when
    absent, as for a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected unit in {line!r}")
            return int(value) * 1024
    return 0


def read_stats(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stats[int(entry)] = parse_stat((proc / entry / "stat").read_text())
    return stats


def tree(roots: Sequence[int], stats: dict[int, ProcStat]) -> list[int]:
    """``roots`` and every descendant of theirs found in ``stats``."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[int] = []
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu(roots: Sequence[int]) -> float:
    """User + system CPU seconds of ``roots`` and their live descendants."""
    stats = read_stats()
    return sum(stats[pid].utime + stats[pid].stime for pid in tree(roots, stats)) / CLOCK_TICKS


def tree_rss(roots: Sequence[int]) -> int:
    """Resident bytes of ``roots`` and their live descendants (shared pages counted in each)."""
    total = 0
    for pid in tree(roots, read_stats()):
        with contextlib.suppress(OSError):
            total += parse_rss(Path(f"/proc/{pid}/status").read_text())
    return total


def sockets(roots: Sequence[int]) -> list[int]:
    """Open sockets of each of ``roots`` and their descendants that holds any, most first:
    how the connections are spread over worker processes."""
    counts = []
    for pid in tree(roots, read_stats()):
        fds = Path(f"/proc/{pid}/fd")
        count = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(fds):
                with contextlib.suppress(OSError):
                    count += os.readlink(fds / fd).startswith("socket:")
        if count:
            counts.append(count)
    return sorted(counts, reverse=True)


def settle(roots: Sequence[int], *, longest: float = 15.0, step: float = 0.5) -> float:
    """Wait until the processes are quiet: under 5% of a CPU over ``step``, or the same
    rate twice running within 3% (a steady housekeeping cost), at most ``longest``
    seconds. Returns the last rate (CPU seconds per second)."""
    deadline = time.monotonic() + longest
    before = tree_cpu(roots)
    previous = -1.0
    while True:
        time.sleep(step)
        now = tree_cpu(roots)
        rate = (now - before) / step
        if rate < 0.05 or abs(rate - previous) <= 0.03 or time.monotonic() >= deadline:
            return rate
        before, previous = now, rate


# -- servers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """One server. ``argv(port, workers)``; ``separate``: no workers option, so several
    processes on several ports (Daphne)."""

    name: str
    label: str
    argv: Callable[[int, int], list[str]]
    keepalive: str
    backlog: int
    separate: bool = False


def _workers(workers: int) -> list[str]:
    return ["--workers", str(workers)] if workers > 1 else []


PEERS = {
    peer.name: peer
    for peer in (
        Peer(
            "channelserver",
            "channelserver",
            lambda port, workers: [
                *(PYTHON, "-m", "channelserver", "--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log", *_workers(workers), APP),
            ],
            "ping after 20 s idle, 20 s timeout",
            2048,
        ),
        Peer(
            "daphne",
            "daphne",
            # -v 0: warnings only, no access log.
            lambda port, workers: [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", APP],
            "ping every 20 s, 30 s timeout",
            50,
            separate=True,
        ),
        Peer(
            "uvicorn",
            "uvicorn h11/wsproto",
            lambda port, workers: [
                *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--http", "h11"),
                *("--ws", "wsproto", "--log-level", "warning", "--no-access-log", *_workers(workers), APP),
            ],
            "ping every 20 s, 20 s timeout",
            2048,
        ),
        Peer(
            "uvicorn-std",
            "uvicorn httptools/websockets",
            lambda port, workers: [
                *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--http", "httptools"),
                *("--ws", "websockets", "--log-level", "warning", "--no-access-log", *_workers(workers), APP),
            ],
            "ping every 20 s, 20 s timeout",
            2048,
        ),
        Peer(
            "hypercorn",
            "hypercorn",
            # No access log is Hypercorn's default.
            lambda port, workers: [
                *(PYTHON, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"),
                *(_workers(workers) or ["--workers", "1"]),
                APP,
            ],
            "no pings (websocket_ping_interval unset)",
            100,
        ),
        Peer(
            "granian",
            "granian",
            # No access log is Granian's default; it always serves from a child process.
            lambda port, workers: [
                *(PYTHON, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)),
                *("--workers", str(workers), "--log-level", "warning", APP),
            ],
            "no pings",
            1024,
        ),
    )
}
DEFAULT_SERVERS = tuple(PEERS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str], source: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WEB_CONCURRENCY", None)  # channelserver and Uvicorn take their workers from it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def http_get_ok(port: int, timeout: float = 5.0) -> bool:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class ServerRun:
    """One peer's processes: one, with ``workers`` workers of its own, or for a peer without
    workers (Daphne) ``workers`` processes on as many ports. Each process leads a process
    group of its own, so stopping it reaches its workers."""

    def __init__(self, peer: Peer, workers: int, env: dict[str, str], logs: Path, source: str | None) -> None:
        self.peer = peer
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        count = workers if peer.separate else 1
        try:
            for index in range(count):
                port = free_port()
                log = logs / f"{peer.name}-{index}-{port}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        peer.argv(port, 1 if peer.separate else workers),
                        cwd=source or ROOT,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                self.ports.append(port)
                self.procs.append(proc)
                self.logs.append(log)
            for port, proc in zip(self.ports, self.procs, strict=True):
                self.wait_ready(port, proc)
        except BaseException:
            self.stop()
            raise

    @property
    def roots(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def wait_ready(self, port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not http_get_ok(port):
            if proc.poll() is not None:
                raise ScaleError(f"{self.peer.name} exited with {proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                raise ScaleError(f"{self.peer.name} did not answer GET / within {timeout:.0f}s: {self.output()}")
            time.sleep(0.2)

    def exited(self) -> str | None:
        for proc in self.procs:
            if proc.poll() is not None:
                return f"{self.peer.name} exited with {proc.returncode}: {self.output()}"
        return None

    def output(self, tail: int = 1500) -> str:
        text = "\n".join(log.read_text("utf-8", "replace") for log in self.logs if log.exists())
        return text[-tail:].strip()

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL to each process group after ``grace`` seconds: shutdown is
        not what this benchmark measures, and a graceful one of thousands of sockets takes
        a while."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            # Workers the leader left behind, or a leader that did not stop in time.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


@contextlib.contextmanager
def redis_server(logs: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of this run's own, no persistence, on a free port: its URL and pid."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise ScaleError("redis-server is not installed (make system-deps installs it)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(logs), "--logfile", str(logs / "redis.log"), "--maxclients", "10000"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while redis_command(port, b"PING") != b"+PONG":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ScaleError(f"redis-server did not start: {(logs / 'redis.log').read_text()[-500:]}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_command(port: int, command: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(256).strip()
    except OSError:
        return b""


# -- the client process ---------------------------------------------------------------------
class ClientProc:
    """:mod:`bench.scale_client` in a process of its own, one JSON line per command."""

    def __init__(self, logs: Path, name: str) -> None:
        self.log = logs / f"client-{name}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "bench.scale_client"],
                cwd=ROOT,
                env=child_env({}, None),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self.answers: queue.Queue[bytes] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self.answers.put(line)
        self.answers.put(b"")

    def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise ScaleError(f"the client did not answer {command['cmd']!r} within {timeout:.0f}s") from None
        except OSError as exc:
            raise ScaleError(f"the client is gone: {exc}; {self.log.read_text()[-1000:]}") from None
        if not line:
            raise ScaleError(f"the client exited: {self.log.read_text()[-1000:]}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ScaleError(f"client: {answer['error']}")
        return answer

    def close(self) -> None:
        """SIGKILL: the kernel resets every socket (SO_LINGER 0), at once."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


# -- the plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    ns: tuple[int, ...]
    fanout_ns: tuple[int, ...]
    storm_n: int
    idle_window: float
    subscribed_window: float
    mutations: int
    warmup: int = 20
    concurrency: int = 32
    storm_timeout: float = 30.0
    mutation_timeout: float = 20.0
    memory_layer: str = "memory"  # BENCH_SCALE_LAYER of idle, subscribed and storm


FULL = Plan(
    ns=(1000, 5000, 10000), fanout_ns=(1000, 10000), storm_n=10000, idle_window=25, subscribed_window=25, mutations=10
)
QUICK = Plan(ns=(100, 300), fanout_ns=(50, 200), storm_n=500, idle_window=4, subscribed_window=4, mutations=3)


def open_timeout(count: int) -> float:
    """How long opening ``count`` connections may take: 30 s plus 10 ms each."""
    return 30.0 + count / 100


def rotated(names: Sequence[str], turn: int) -> list[str]:
    shift = turn % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


# -- workloads ------------------------------------------------------------------------------
@dataclass
class Context:
    plan: Plan
    logs: Path
    source: str | None
    redis_url: str = ""
    redis_pid: int = 0


def warm_up(client: ClientProc, server: ServerRun, command: dict[str, Any], count: int) -> None:
    answer = client.call({**command, "count": count}, open_timeout(count) + 30)
    if answer["ready"] < count:
        raise ScaleError(f"warm-up: {answer['ready']} of {count} ready ({answer['first_error']})")
    client.call({"cmd": "drop"}, 30)


def open_step(client: ClientProc, command: dict[str, Any], count: int) -> dict[str, Any]:
    timeout = open_timeout(count)
    return client.call({**command, "count": count, "timeout": timeout}, timeout + 60)


def run_sockets(peer: Peer, workload: str, ctx: Context) -> dict[str, Any]:
    """``idle`` or ``subscribed``: open ``plan.ns`` connections in steps on one worker;
    RSS after each step, a quiet window at the last."""
    plan = ctx.plan
    subscribed = workload == "subscribed"
    command: dict[str, Any] = {
        "cmd": "open",
        "path": "/ws/subscribed" if subscribed else "/ws/idle",
        "expect": 3 if subscribed else 0,
        "deflate": subscribed,
        "concurrency": plan.concurrency,
    }
    window = plan.subscribed_window if subscribed else plan.idle_window
    result: dict[str, Any] = {"server": peer.name, "workers": 1, "steps": [], "failed_at": None}
    server = ServerRun(peer, 1, child_env({"BENCH_SCALE_LAYER": plan.memory_layer}, ctx.source), ctx.logs, ctx.source)
    client = ClientProc(ctx.logs, f"{workload}-{peer.name}")
    command["ports"] = server.ports
    try:
        warm_up(client, server, command, plan.warmup)
        settle(server.roots)
        result["rss_before"] = before = tree_rss(server.roots)
        total = 0
        for n in plan.ns:
            answer = open_step(client, command, n - total)
            if stopped(result, server, answer, n, total):
                return result
            total = n
            settle(server.roots)
            rss = tree_rss(server.roots)
            step = {"n": n, "rss": rss, "kib_per_conn": (rss - before) / n / 1024, "client": answer}
            result["steps"].append(step)
            if answer["deflate"]:
                result["deflate"] = answer["extensions"]
            say(
                f"  {n:>6,}: {answer['ready']:,} opened in {answer['elapsed']:.1f}s, "
                f"RSS {rss / 2**20:.0f} MiB, {step['kib_per_conn']:.1f} KiB/conn"
            )
        cpu0, stats0 = tree_cpu(server.roots), client.call({"cmd": "stats"}, 30)
        start = time.monotonic()
        time.sleep(window)
        cpu1, stats1 = tree_cpu(server.roots), client.call({"cmd": "stats"}, 30)
        seconds = time.monotonic() - start
        rss = tree_rss(server.roots)
        result["window"] = {
            "n": total,
            "seconds": seconds,
            "cpu_s": cpu1 - cpu0,
            "ms_per_s": (cpu1 - cpu0) / seconds * 1000,
            "pings_per_conn": (stats1["pings"] - stats0["pings"]) / total,
            # Only when most connections were pinged: else this divides housekeeping by a few pings.
            "us_per_ping": (cpu1 - cpu0) / pings * 1e6
            if (pings := stats1["pings"] - stats0["pings"]) >= total / 2
            else None,
            "rss_after": rss,
            "kib_per_conn_after": (rss - before) / total / 1024,
            "open_after": stats1["open"],
            "closes": stats1["closes"],
        }
        say(
            f"  window {seconds:.0f}s: {result['window']['ms_per_s']:.1f} ms CPU/s, "
            f"{result['window']['pings_per_conn']:.2f} pings/conn, {stats1['open']:,} still open"
        )
        return result
    finally:
        client.close()
        server.stop()


def stopped(result: dict[str, Any], server: ServerRun, answer: dict[str, Any], n: int, before: int) -> bool:
    """Whether the step to ``n`` connections fell short or the server exited; if so the
    result says at what count ("failed at")."""
    gone = server.exited()
    if answer["ready"] >= n - before and not gone:
        return False
    result["failed_at"] = before + answer["ready"]
    result["failed_step"] = {"n": n, "client": answer}
    result["error"] = gone or f"at {n:,}: {answer['failed']} ({answer['first_error']})"
    say(f"  failed at {result['failed_at']:,}: {result['error'][:300]}")
    return True


def run_storm(peer: Peer, ctx: Context) -> dict[str, Any]:
    """``storm``: ``plan.storm_n`` connections to the idle consumer at once."""
    plan = ctx.plan
    n = plan.storm_n
    command: dict[str, Any] = {"cmd": "open", "path": "/ws/idle", "concurrency": 0}
    server = ServerRun(peer, 1, child_env({"BENCH_SCALE_LAYER": plan.memory_layer}, ctx.source), ctx.logs, ctx.source)
    client = ClientProc(ctx.logs, f"storm-{peer.name}")
    command["ports"] = server.ports
    try:
        warm_up(client, server, command, plan.warmup)
        settle(server.roots)
        before = tree_rss(server.roots)
        answer = client.call({**command, "count": n, "timeout": plan.storm_timeout}, plan.storm_timeout + 60)
        say(
            f"  {answer['ready']:,} of {n:,} in {answer['elapsed']:.1f}s, "
            f"p50 {answer['ready_s'].get('p50', 0):.2f}s, failed {answer['failed'] or 0}"
        )
        settle(server.roots)
        return {
            "server": peer.name,
            "n": n,
            "client": answer,
            "rss_before": before,
            "rss_after": tree_rss(server.roots),
            "error": server.exited(),
        }
    finally:
        client.close()
        server.stop()


def run_fanout(peer: Peer, layer: str, ctx: Context) -> dict[str, Any]:
    """``fanout``: ``plan.fanout_ns`` subscribers in steps on two workers, ``plan.mutations``
    mutations at each step."""
    plan = ctx.plan
    redis_command(int(ctx.redis_url.rsplit(":", 1)[1].split("/")[0]), b"FLUSHALL")
    env = child_env({"BENCH_SCALE_LAYER": layer, "BENCH_REDIS_URL": ctx.redis_url}, ctx.source)
    server = ServerRun(peer, 2, env, ctx.logs, ctx.source)
    client = ClientProc(ctx.logs, f"fanout-{layer}-{peer.name}")
    command: dict[str, Any] = {
        "cmd": "open",
        "ports": server.ports,
        "path": "/graphql",
        "graphql": True,
        "concurrency": plan.concurrency,
    }
    mutate: dict[str, Any] = {
        "cmd": "fanout",
        "port": server.ports[0],
        "timeout": plan.mutation_timeout,
        "pause": 0.1,
    }
    result: dict[str, Any] = {
        "server": peer.name,
        "layer": layer,
        "processes": len(server.procs),
        "steps": [],
        "failed_at": None,
    }
    try:
        client.call({**command, "count": plan.warmup, "timeout": 60}, 90)
        client.call({**mutate, "mutations": 1, "first_seq": 1_000_000}, plan.mutation_timeout + 30)
        client.call({"cmd": "drop"}, 30)
        settle(server.roots)
        total = 0
        seq = 1
        for n in plan.fanout_ns:
            answer = open_step(client, command, n - total)
            if stopped(result, server, answer, n, total):
                return result
            total = n
            settle(server.roots)
            spread = sockets(server.roots)
            cpu0, redis0 = tree_cpu(server.roots), tree_cpu([ctx.redis_pid])
            fan = client.call(
                {**mutate, "mutations": plan.mutations, "first_seq": seq},
                plan.mutations * (plan.mutation_timeout + 5) + 30,
            )
            cpu1, redis1 = tree_cpu(server.roots), tree_cpu([ctx.redis_pid])
            seq += plan.mutations
            step = summarize_fanout(n, answer, fan, cpu1 - cpu0, redis1 - redis0)
            step["sockets"] = spread
            result["steps"].append(step)
            say(
                f"  {n:>6,}: subscribed in {answer['elapsed']:.1f}s; last delivery p50 {fmt(step['p50_ms'], '{:.0f}')} ms, "
                f"p99 {fmt(step['p99_ms'], '{:.0f}')} ms; {fmt(step['us_per_delivery'], '{:.1f}')} us CPU/delivery; "
                f"missed {step['missed']:,}"
            )
        return result
    finally:
        client.close()
        server.stop()


def summarize_fanout(
    n: int, opened: dict[str, Any], fan: dict[str, Any], cpu: float, redis_cpu: float
) -> dict[str, Any]:
    """One fan-out step's figures from the client's answers and the CPU seconds spent."""
    subscribers: int = fan["subscribers"]
    mutations: list[dict[str, Any]] = fan["mutations"]
    complete = [m["last_s"] * 1000 for m in mutations if m["delivered"] >= subscribers and m["last_s"] is not None]
    deliveries = sum(m["delivered"] for m in mutations)
    spread = quantiles(complete)
    return {
        "n": n,
        "subscribers": subscribers,
        "subscribe_s": opened["elapsed"],
        "mutations": mutations,
        "complete": len(complete),
        "missed": subscribers * len(mutations) - deliveries,
        "p50_ms": spread.get("p50"),
        "p99_ms": spread.get("p99"),
        "cpu_s": cpu,
        "us_per_delivery": cpu / deliveries * 1e6 if deliveries else None,
        "redis_us_per_delivery": redis_cpu / deliveries * 1e6 if deliveries else None,
        "failed_posts": [m["answer"] for m in mutations if not m["ok"]][:3],
    }


# -- tables ---------------------------------------------------------------------------------
Value = float | int | str | None


def fmt(value: Value, spec: str = "{:,.1f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return spec.format(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Collection[int] = (0,)) -> str:
    """A GitHub markdown table: the columns numbered in ``left`` left-aligned (text), the
    others right-aligned (numbers)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 2)) if i in left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


@dataclass(frozen=True)
class Column:
    """One column of a workload's table: its title, the value of a server's result, how it
    is printed, and whether lower (``-1``) or higher (``1``) is better (0: no ratio)."""

    title: str
    value: Callable[[dict[str, Any]], Value]
    spec: str = "{:,.1f}"
    better: int = 0
    left: bool = False  # text, left-aligned
    #: Which peers the ratio may name (default: all): idle CPU only those that ping.
    comparable: Callable[[dict[str, Any]], bool] = lambda result: True


def ratio_cells(columns: Sequence[Column], results: dict[str, dict[str, Any]]) -> list[str] | None:
    """The ``channelserver ÷ best peer`` row: for each column with a direction, ours over the
    best other server's number, with that server's name."""
    if OURS not in results or len(results) < 2:
        return None
    cells = []
    for column in columns:
        ours = column.value(results[OURS]) if column.better else None
        peers = {
            name: value
            for name, result in results.items()
            if name != OURS
            and column.comparable(result)
            and isinstance(value := column.value(result), (int, float))
            and value > 0
        }
        if not isinstance(ours, (int, float)) or not peers:
            cells.append("")
            continue
        best = min(peers, key=peers.__getitem__) if column.better < 0 else max(peers, key=peers.__getitem__)
        cells.append(f"{ours / peers[best]:.2f}x ({best})")
    return cells


def workload_table(columns: Sequence[Column], results: dict[str, dict[str, Any]], names: Sequence[str]) -> str:
    rows = [[name, *(fmt(c.value(results[name]), c.spec) for c in columns)] for name in names if name in results]
    ratios = ratio_cells(columns, results)
    if ratios is not None:
        rows.append([f"{OURS} ÷ best peer", *ratios])
    left = [0, *(i + 1 for i, c in enumerate(columns) if c.left)]
    return markdown_table(["server", *(c.title for c in columns)], rows, left)


def step_value(n: int, key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], Value]:
    """A figure of the step at ``n``, or "failed at X" in the step where the server stopped."""

    def value(result: dict[str, Any]) -> Value:
        for step in result.get("steps", []):
            if step["n"] == n:
                figure = step.get(key)
                return figure * scale if isinstance(figure, (int, float)) else figure
        if result.get("failed_at") is not None:
            return f"failed at {result['failed_at']:,}"
        return "error" if result.get("error") else None

    return value


def window_value(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], Value]:
    def value(result: dict[str, Any]) -> Value:
        figure = result.get("window", {}).get(key)
        return figure * scale if isinstance(figure, (int, float)) else None

    return value


def socket_columns(plan: dict[str, Any], workload: str) -> list[Column]:
    ns: list[int] = plan["ns"]
    top = ns[-1]
    window = plan["subscribed_window" if workload == "subscribed" else "idle_window"]
    columns = [
        Column("keepalive (default)", lambda r: PEERS[r["server"]].keepalive, left=True),
        Column("RSS at start (MiB)", lambda r: r["rss_before"] / 2**20 if "rss_before" in r else None, "{:,.0f}"),
        *(Column(f"KiB/conn @{n:,}", step_value(n, "kib_per_conn"), better=-1) for n in ns),
        Column(f"RSS @{top:,} (MiB)", step_value(top, "rss", 2**-20), "{:,.0f}", better=-1),
        Column(f"idle CPU @{top:,} (ms/s)", window_value("ms_per_s"), "{:,.1f}", better=-1, comparable=pinged),
        Column(f"pings/conn in {window:.0f} s", window_value("pings_per_conn"), "{:.2f}"),
        Column("µs CPU/ping", window_value("us_per_ping"), "{:,.0f}", better=-1),
        Column("opened/s", opened_rate, "{:,.0f}", better=1),
    ]
    if workload == "subscribed":
        columns.insert(1, Column("deflate accepted", deflate_text, left=True))
        columns.append(
            Column(f"KiB/conn after {window:.0f} s idle", window_value("kib_per_conn_after"), "{:,.1f}", better=-1)
        )
    return columns


def pinged(result: dict[str, Any]) -> bool:
    """Whether the server pinged most connections in the window: idle CPU is compared
    among those only (a server that never pings does no keepalive work at all)."""
    return bool(result.get("window", {}).get("pings_per_conn", 0) >= 0.5)


def opened_rate(result: dict[str, Any]) -> Value:
    steps = result.get("steps", [])
    seconds = sum(step["client"]["elapsed"] for step in steps)
    opened = sum(step["client"]["ready"] for step in steps)
    return opened / seconds if seconds else None


def deflate_text(result: dict[str, Any]) -> Value:
    if not result.get("steps"):
        return None
    offered = result.get("deflate")
    if not offered:
        return "no"
    params = [p.strip() for p in offered.split(";")[1:]]
    return "yes" + (f" ({', '.join(params)})" if params else "")


def storm_columns(plan: dict[str, Any]) -> list[Column]:
    def client(key: str) -> Callable[[dict[str, Any]], Value]:
        return lambda r: r["client"]["ready_s"].get(key) if "client" in r else None

    def all_in(result: dict[str, Any]) -> Value:
        if "client" not in result:
            return "error"
        answer = result["client"]
        if answer["ready"] < result["n"]:
            return f"{answer['ready']:,} of {result['n']:,}"
        return float(answer["elapsed"])

    def failures(result: dict[str, Any]) -> Value:
        if "client" not in result:
            return None
        failed: dict[str, int] = result["client"]["failed"]
        return ", ".join(f"{kind} {count:,}" for kind, count in sorted(failed.items())) or "0"

    return [
        Column("listen backlog (default)", lambda r: PEERS[r["server"]].backlog, "{:,}"),
        Column(f"all {plan['storm_n']:,} accepted (s)", all_in, "{:.2f}", better=-1),
        Column("p50 (s)", client("p50"), "{:.2f}", better=-1),
        Column("p99 (s)", client("p99"), "{:.2f}", better=-1),
        Column("failures", failures, left=True),
        Column(
            "KiB/conn after",
            lambda r: (
                (r["rss_after"] - r["rss_before"]) / max(1, r["client"]["ready"]) / 1024 if "client" in r else None
            ),
            better=-1,
        ),
    ]


def fanout_columns(plan: dict[str, Any]) -> list[Column]:
    ns: list[int] = plan["fanout_ns"]
    columns = [Column("processes", fanout_processes, left=True)]
    for n in ns:
        columns += [
            Column(f"subscribe {n:,} (s)", step_value(n, "subscribe_s"), "{:,.1f}", better=-1),
            Column(f"last delivery p50 @{n:,} (ms)", step_value(n, "p50_ms"), "{:,.0f}", better=-1),
            Column(f"p99 @{n:,} (ms)", step_value(n, "p99_ms"), "{:,.0f}", better=-1),
            Column(f"CPU/delivery @{n:,} (µs)", step_value(n, "us_per_delivery"), "{:,.1f}", better=-1),
        ]
    columns += [
        Column(f"sockets per process @{ns[-1]:,}", socket_spread(ns[-1]), left=True),
        Column(
            "missed", lambda r: sum(step["missed"] for step in r.get("steps", [])) if r.get("steps") else None, "{:,}"
        ),
        Column(f"redis CPU/delivery @{ns[-1]:,} (µs)", step_value(ns[-1], "redis_us_per_delivery"), "{:,.1f}"),
    ]
    return columns


def socket_spread(n: int) -> Callable[[dict[str, Any]], Value]:
    """The two processes holding most sockets at ``n`` subscribers: how evenly the
    listening socket's connections went to the workers."""

    def value(result: dict[str, Any]) -> Value:
        for step in result.get("steps", []):
            if step["n"] == n and step.get("sockets"):
                return " + ".join(f"{count:,}" for count in step["sockets"][:2])
        return None

    return value


def fanout_processes(result: dict[str, Any]) -> Value:
    if PEERS[result["server"]].separate:
        return f"{result.get('processes', 2)} processes, 2 ports"
    return "--workers 2"


def servers_table(names: Sequence[str]) -> str:
    """Each server's command line (one worker; ``--workers 2`` or a second process in
    fan-out), its default keepalive and listen backlog."""
    rows = []
    for name in names:
        peer = PEERS[name]
        argv = ["python" if arg == PYTHON else "APP" if arg == APP else arg for arg in peer.argv(8000, 1)]
        rows.append([name, f"`{' '.join(argv).replace('8000', 'PORT')}`", peer.keepalive, f"{peer.backlog:,}"])
    header = ["server", "command (APP: bench.scaleproject.asgi:application)", "keepalive", "backlog"]
    return markdown_table(header, rows, left=(0, 1, 2))


def report(results: dict[str, Any]) -> str:
    plan = results["plan"]
    names: list[str] = results["servers"]
    out = [
        f"# Scale benchmark, {results['date']}",
        "",
        f"channelserver {results['revision']}; {results['machine']}; load average "
        f"{results['loadavg_before'][0]:.1f} before, {results['loadavg_after'][0]:.1f} after; "
        f"{results['seconds_total'] / 60:.1f} minutes.",
        "Every server at log level warning with access logs off, other settings at their defaults; "
        "loopback; one client process (raw asyncio sockets, answering pings). "
        f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
    ]
    out += [
        f"The `{OURS} ÷ best peer` rows: channelserver's figure over the best other server's "
        "(the lowest; for opened/s the highest; for idle CPU among the servers that ping), naming that server.",
        "",
        "## servers",
        "",
        servers_table(names),
    ]
    data = results["workloads"]
    if "idle" in data:
        out += [
            "",
            "## idle: WebSockets to a Channels consumer that joined a group (one worker, in-memory layer)",
            "",
            LAYER_NOTES[plan["memory_layer"]],
            "KiB/conn: (RSS of the server's processes with N open - RSS before the first) / N. "
            f"Idle CPU: server CPU time per second over {plan['idle_window']:.0f} s at {plan['ns'][-1]:,} open.",
            "",
            workload_table(socket_columns(plan, "idle"), data["idle"], names),
        ]
    if "subscribed" in data:
        out += [
            "",
            "## subscribed: the same, permessage-deflate offered as Chrome does, three 200-byte messages received",
            "",
            "Each connection offers `permessage-deflate; client_max_window_bits` and has received three "
            "200-byte JSON messages from its consumer when RSS is read; "
            f"read again after {plan['subscribed_window']:.0f} s without traffic.",
            "",
            workload_table(socket_columns(plan, "subscribed"), data["subscribed"], names),
        ]
    for layer in LAYERS:
        key = f"fanout-{layer}"
        if key in data:
            out += [
                "",
                f"## fan-out through Redis, {LAYER_LABELS[layer]}",
                "",
                "N graphql-transport-ws subscribers of one Strawberry subscription (consumer's channel in a group "
                f"through `listen_to_channel`), two worker processes; {plan['mutations']} mutations (HTTP POST) one "
                "after the other. Last delivery: from the POST to the last subscriber's result (p99 of "
                f"{plan['mutations']} is their worst). CPU/delivery: CPU time of all server processes over the "
                "mutations / deliveries; redis-server's apart. Daphne: two processes on two ports, the "
                "subscribers split between them.",
                "",
                workload_table(fanout_columns(plan), data[key], names),
            ]
    if "storm" in data:
        out += [
            "",
            f"## connect storm: {plan['storm_n']:,} clients connect at once to the idle consumer",
            "",
            "Times from the first connect to each 101 (the consumer joins its group before it accepts); "
            f"each client gives up after {plan['storm_timeout']:.0f} s. The listen backlog is each server's "
            "default (the kernel caps it at net.core.somaxconn).",
            "",
            workload_table(storm_columns(plan), data["storm"], names),
        ]
    errors = [
        f"- {workload} / {name}: {result['error'][:400]}"
        for workload, by_server in data.items()
        for name, result in by_server.items()
        if result.get("error")
    ]
    if errors:
        out += ["", "## errors", "", *errors]
    return "\n".join(out) + "\n"


# -- the whole run --------------------------------------------------------------------------
def versions() -> dict[str, str]:
    found = {}
    for dist in (
        *("channelserver", "daphne", "uvicorn", "websockets", "hypercorn", "granian", "uvloop"),
        *("h11", "wsproto", "httptools", "twisted", "django", "channels", "channels-redis", "redis"),
        "strawberry-graphql",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def guarded(what: str, run: Callable[[], dict[str, Any]], server: str) -> dict[str, Any]:
    """A workload's run for one server; an error becomes the result instead of ending the run."""
    started = time.monotonic()
    say(f"{what}: {server}")
    try:
        result = run()
    except (ScaleError, OSError, subprocess.SubprocessError) as exc:
        say(f"  error: {exc}")
        result = {"server": server, "error": str(exc), "steps": [], "failed_at": None}
    result["seconds"] = time.monotonic() - started
    say(f"  ({result['seconds']:.0f}s)")
    return result


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    plan: Plan = args.plan
    names: list[str] = args.servers
    started = time.monotonic()
    data: dict[str, dict[str, dict[str, Any]]] = {}
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "revision": revision(args.rev),
        "machine": f"{os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB",
        "versions": versions(),
        "servers": names,
        "plan": dataclasses.asdict(plan),
        "nofile": raise_nofile(),
        "loadavg_before": os.getloadavg(),
        "workloads": data,
    }
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        ctx = Context(plan, logs, args.source)
        turn = 0
        for workload in args.workloads:
            if workload == "fanout":
                ctx.redis_url, ctx.redis_pid = stack.enter_context(redis_server(logs))
                for layer in args.layers:
                    key = f"fanout-{layer}"
                    data[key] = {}
                    for name in rotated(names, turn):
                        data[key][name] = guarded(
                            f"fanout ({layer})", partial(run_fanout, PEERS[name], layer, ctx), name
                        )
                    turn += 1
                continue
            data[workload] = {}
            for name in rotated(names, turn):
                if workload == "storm":
                    run = partial(run_storm, PEERS[name], ctx)
                else:
                    run = partial(run_sockets, PEERS[name], workload, ctx)
                data[workload][name] = guarded(workload, run, name)
            turn += 1
    results["loadavg_after"] = os.getloadavg()
    results["seconds_total"] = time.monotonic() - started
    return results


def csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        for item in items:
            if item not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
        return list(dict.fromkeys(items))

    return parse


def counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(item.replace("_", "")) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of counts") from None
    if not values or any(v <= 0 for v in values) or list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be positive and increasing")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/scale.py",
        description="Many WebSockets on channelserver and its peers: memory and idle CPU per connection, "
        "fan-out through Redis, connect storm.",
    )
    parser.add_argument("--quick", action="store_true", help="Small counts and short windows: a smoke run.")
    parser.add_argument("--n", type=counts, help="Connections of idle and subscribed (default 1000,5000,10000).")
    parser.add_argument("--fanout-n", type=counts, help="Subscribers of fanout (default 1000,10000).")
    parser.add_argument("--storm-n", type=int, help="Clients of storm (default: the largest --n).")
    parser.add_argument("--mutations", type=int, help="Mutations per fan-out step (default 10).")
    parser.add_argument("--window", type=float, help="Quiet window of idle and subscribed, seconds (default 25, 35).")
    parser.add_argument("--servers", type=csv(DEFAULT_SERVERS), default=list(DEFAULT_SERVERS))
    parser.add_argument("--workloads", type=csv(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--layers", type=csv(LAYERS), default=list(LAYERS), help="Channel layers of fanout.")
    parser.add_argument(
        "--stock-memory-layer",
        action="store_true",
        help="idle, subscribed, storm: Channels' InMemoryChannelLayer as it is (its sweep at every receive).",
    )
    parser.add_argument("--rev", help="Serve channelserver as of this git revision (default: the working tree).")
    parser.add_argument("--output", default=str(RESULTS), help="Directory for the results.")
    parser.add_argument("--report", metavar="JSON", help="Print the tables of a results file again, run nothing.")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.n:
        changes["ns"] = args.n
        changes["storm_n"] = args.n[-1]
    if args.fanout_n:
        changes["fanout_ns"] = args.fanout_n
    if args.storm_n:
        changes["storm_n"] = args.storm_n
    if args.mutations:
        changes["mutations"] = args.mutations
    if args.window:
        changes["idle_window"] = changes["subscribed_window"] = args.window
    if args.stock_memory_layer:
        changes["memory_layer"] = "memory-stock"
    args.plan = dataclasses.replace(plan, **changes)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())), end="")
        return 0
    raise_nofile()  # before any server starts: they inherit it
    with source_tree(args.rev) as args.source:
        results = benchmark(args)
    text = report(results)
    print(text)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"scale-{stamp}.md").write_text(text)
    (out_dir / f"scale-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    say(f"results: {out_dir / f'scale-{stamp}.md'} and .json ({results['seconds_total'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
