"""``make bench``: channelserver, Uvicorn, Granian and Daphne side by side in one run, plus
the parsers' own cost, as server CPU time per operation and throughput.

Two kinds of workload, each served by one app that every server imports by the same path:

- raw (``--workloads raw``: http, ws, post64k, stream1m): a raw ASGI app,
  :mod:`bench.apps`, so that only the server is measured. Default servers: channelserver,
  Uvicorn (h11/wsproto), both again with their access logs on, Daphne, and the floor;
  on http and ws also channelserver with a JSON access log and with ``--metrics`` (access
  log off; skipped with a message when ``python -m channelserver --help`` has no
  ``--metrics``), reported side by side with no access log and the text one.
- Channels (``--workloads channels``: ch-connect, ch-echo, ch-fanout-mem, ch-fanout-redis,
  dj-view): a small Django + Channels project, ``bench/djproject`` (``ProtocolTypeRouter``,
  ``AsyncWebsocketConsumer``, an async Django view), where Channels users spend their CPU.
  ch-connect: one op opens a WebSocket, reads the 101, closes it; ch-echo: one message
  echoed by a consumer; ch-fanout-*: one ``group_send`` delivery to one of 500 subscribers
  (``InMemoryChannelLayer``, or ``RedisPubSubChannelLayer`` on a redis-server this script
  starts in a temporary directory, skipped with a message when ``redis-server`` is not
  installed, an error with ``CI=true``); dj-view: one ``GET /`` through Django's seven
  default middleware. Default servers: channelserver (access log off and on), Uvicorn
  h11/wsproto, Uvicorn httptools/websockets (``uvicorn-std``, its defaults), Granian and
  Daphne.

``--workloads`` takes names and the presets ``raw``, ``channels`` and ``all`` (the
default); ``--servers`` replaces both default lists. ``make bench-channels`` runs the
Channels workloads only, with ``--pin``: every server on the last CPU, the load generator
and redis-server on the others (as the figures of issue 13 were taken).

Method (docs/performance.md says more):

- Every server runs from its own process per app, started once for the whole run by its
  command line on 127.0.0.1 (port 0, a socket passed by ``--fd``, or for Granian a free
  port picked here), access logs off; channelserver and Uvicorn are measured again with
  their access logs on (the defaults users run).
- The load generator (:mod:`bench.load`) is a separate process: raw sockets, pre-built
  requests and masked frames, one operation in flight per connection. It snapshots the
  server's user+sys CPU time (psutil) right before and after its timed phase; server CPU
  time per operation is the difference divided by the operations. That number barely
  moves when other processes compete for the CPU, unlike requests per second, which is
  reported second.
- The parsers' own cost (:mod:`bench.parsers`): h11 and wsproto driven in-process with no
  sockets, the same bytes; the targets compare against the server's half of that work.
- Each repetition runs every workload against every server (the order rotated per
  repetition, so drift of the machine's load is spread evenly) after one untimed warm-up
  round; each cell reports the median of the repetitions.

``--profile WORKLOAD`` (any of them) runs channelserver alone with cProfile on during the
timed phase and prints where its time goes per operation: split into the server's code,
its parsers, Channels/asgiref/Django, the event loop and the rest, then by module and by
function.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import CHANNELS_WORKLOADS, HTTP_GET, RAW_WORKLOADS, WORKLOADS  # noqa: E402

PYTHON = sys.executable
APP = "bench.apps:app"
#: The app of the Channels workloads: ``bench/djproject/``.
CHANNELS_APP = "bench.djproject.asgi:application"
RESULTS = ROOT / "bench" / "results"

#: Figures of issue 2 measured on a 2-core machine like this one (us of CPU per operation).
REFERENCE = {
    "daphne": {"http": 125.0, "ws": 56.0},
    "uvicorn": {"http": 72.0, "ws": 23.0},
    "h11-server": {"http": 42.0},
    "wsproto-server": {"ws": 12.0},
}
TARGETS = {"http": ("h11-server", 1.3), "ws": ("wsproto-server", 1.5)}

UNITS = {
    "http": "request",
    "ws": "ws message",
    "post64k": "64 KiB POST",
    "stream1m": "1 MiB response",
    "ch-connect": "ws connect+close",
    "ch-echo": "ws message",
    "ch-fanout-mem": "delivery",
    "ch-fanout-redis": "delivery",
    "dj-view": "request",
}
#: Concurrent connections; for ``ch-fanout-*`` the subscribers (plus one trigger).
CONNECTIONS = {
    "http": 8,
    "ws": 8,
    "post64k": 4,
    "stream1m": 4,
    "ch-connect": 4,
    "ch-echo": 8,
    "ch-fanout-mem": 500,
    "ch-fanout-redis": 500,
    "dj-view": 8,
}
MAX_OPS = {
    "http": 200_000,
    "ws": 200_000,
    "post64k": 50_000,
    "stream1m": 10_000,
    "ch-connect": 50_000,
    "ch-echo": 200_000,
    "ch-fanout-mem": 500_000,
    "ch-fanout-redis": 500_000,
    "dj-view": 100_000,
}
#: What the Channels workloads measure, for the table's header.
TITLES = {
    "ch-connect": "connect+close",
    "ch-echo": "echo",
    "ch-fanout-mem": "fan-out mem",
    "ch-fanout-redis": "fan-out redis",
    "dj-view": "Django view",
}
#: Workloads that need the harness's redis-server.
NEEDS_REDIS = ("ch-fanout-redis",)


def app_for(workload: str) -> str:
    """The import path of the app that serves ``workload``."""
    return CHANNELS_APP if workload in CHANNELS_WORKLOADS else APP


PARSERS = {"h11-server": "http", "h11": "http", "wsproto-server": "ws", "wsproto": "ws"}
PARSER_LABELS = {
    "h11-server": "h11 own, server side",
    "h11": "h11 own, client+server",
    "wsproto-server": "wsproto own, server side",
    "wsproto": "wsproto own, client+server",
}


# -- servers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerSpec:
    """How to start one server. ``argv(bind, app)`` gets the binding flags to use.

    With ``ready`` None the server gets a socket bound here, by file descriptor
    (``--fd N``): Daphne, whose port line is not logged at ``-v 0``. Otherwise it binds
    127.0.0.1 port 0 itself (``--host 127.0.0.1 --port 0``) and ``ready`` matches the line
    that names the port. (Uvicorn's ``--fd`` treats the socket as a Unix socket, which turns
    off TCP_NODELAY and stalls its two-write responses, so it binds its own.) With
    ``fixed_port`` it binds a free port picked here (``--host 127.0.0.1 --port N``) and is
    ready once it accepts a connection: Granian, which has neither ``--fd`` nor port 0."""

    name: str
    label: str
    loop: str
    argv: Callable[[list[str], str], list[str]]
    ready: re.Pattern[bytes] | None
    workloads: tuple[str, ...] = WORKLOADS
    fixed_port: bool = False
    #: A flag this server's command line uses that not every channelserver revision has:
    #: the server is skipped, with a message, when ``--help`` does not list it.
    needs_flag: str | None = None


def _channelserver(*flags: str, access_log: bool = False) -> Callable[[list[str], str], list[str]]:
    quiet = () if access_log else ("--no-access-log",)
    return lambda bind, app: [PYTHON, "-m", "channelserver", *bind, *quiet, *flags, app]


def _uvicorn(*flags: str, access_log: bool = False) -> Callable[[list[str], str], list[str]]:
    quiet = () if access_log else ("--no-access-log",)
    return lambda bind, app: [
        *(PYTHON, "-m", "uvicorn", *bind, "--http", "h11", "--ws", "wsproto", *quiet),
        *flags,
        app,
    ]


def _uvicorn_std(bind: list[str], app: str) -> list[str]:
    # Uvicorn's own choice when httptools and websockets are installed (``--http auto
    # --ws auto``), spelled out so a missing package fails instead of falling back.
    return [PYTHON, "-m", "uvicorn", *bind, "--http", "httptools", "--ws", "websockets", "--no-access-log", app]


def _granian(bind: list[str], app: str) -> list[str]:
    # One worker process (Granian always serves from a child of the process started here;
    # the load generator counts the CPU time of both), its default runtime threads and loop;
    # no access log is Granian's default.
    return [PYTHON, "-m", "granian", "--interface", "asgi", *bind, "--workers", "1", app]


def _daphne(bind: list[str], app: str) -> list[str]:
    # -v 0: at its default verbosity Daphne writes an access log line per request to stdout.
    return [PYTHON, "-m", "daphne", *bind, "-v", "0", app]


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


_AUTO_LOOP = "uvloop" if _has("uvloop") else "asyncio"
_CS_READY = re.compile(rb"Listening on http://127\.0\.0\.1:(\d+)")
_UV_READY = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")

SERVERS = {
    spec.name: spec
    for spec in (
        ServerSpec("channelserver", "channelserver", _AUTO_LOOP, _channelserver(), _CS_READY),
        ServerSpec("uvicorn", "uvicorn h11/wsproto", _AUTO_LOOP, _uvicorn(), _UV_READY),
        ServerSpec("daphne", "daphne", "twisted", _daphne, None),
        ServerSpec(
            "floor",
            "floor: sockets+loop only",
            _AUTO_LOOP,
            lambda bind, app: [PYTHON, "-m", "bench.floor"],
            _CS_READY,
            ("http", "ws"),
        ),
        # The defaults users run: an access log line per request (to the pipe this process
        # reads), as both servers write by default.
        ServerSpec(
            "channelserver-log", "channelserver, access log", _AUTO_LOOP, _channelserver(access_log=True), _CS_READY
        ),
        ServerSpec("uvicorn-log", "uvicorn h11/wsproto, access log", _AUTO_LOOP, _uvicorn(access_log=True), _UV_READY),
        # What the access log's format and the metrics cost, against ``channelserver``
        # (no access log): the JSON line, and --metrics on its own port (access log off).
        ServerSpec(
            "channelserver-json",
            "channelserver, JSON access log",
            _AUTO_LOOP,
            _channelserver("--access-log-format", "json", access_log=True),
            _CS_READY,
            ("http", "ws"),
        ),
        ServerSpec(
            "channelserver-metrics",
            "channelserver, --metrics",
            _AUTO_LOOP,
            _channelserver("--metrics", "127.0.0.1:0"),
            _CS_READY,
            ("http", "ws"),
            needs_flag="--metrics",
        ),
        ServerSpec("channelserver-asyncio", "channelserver", "asyncio", _channelserver("--loop", "asyncio"), _CS_READY),
        ServerSpec("uvicorn-asyncio", "uvicorn h11/wsproto", "asyncio", _uvicorn("--loop", "asyncio"), _UV_READY),
        ServerSpec("uvicorn-std", "uvicorn httptools/websockets", _AUTO_LOOP, _uvicorn_std, _UV_READY),
        ServerSpec(
            "granian", "granian", "uvloop" if _AUTO_LOOP == "uvloop" else "asyncio", _granian, None, fixed_port=True
        ),
    )
}
#: The servers each kind of workload runs on unless ``--servers`` says otherwise.
DEFAULT_SERVERS = (
    *("channelserver", "uvicorn", "channelserver-log", "channelserver-json", "channelserver-metrics", "uvicorn-log"),
    *("daphne", "floor"),
)
#: The variants :func:`overheads` compares with ``channelserver`` (access log off).
VARIANTS = {
    "channelserver-log": "text access log",
    "channelserver-json": "JSON access log",
    "channelserver-metrics": "--metrics, no access log",
}
DEFAULT_CHANNELS_SERVERS = ("channelserver", "channelserver-log", "uvicorn", "uvicorn-std", "granian", "daphne")
#: ``--workloads`` presets.
PRESETS = {"raw": RAW_WORKLOADS, "channels": CHANNELS_WORKLOADS, "all": WORKLOADS}


def default_servers(workload: str) -> tuple[str, ...]:
    return DEFAULT_CHANNELS_SERVERS if workload in CHANNELS_WORKLOADS else DEFAULT_SERVERS


def child_env(extra: dict[str, str] | None = None, source: str | None = None) -> dict[str, str]:
    """The environment of a child: the repository (for ``bench.*``) on its path, after
    ``source`` (a snapshot of channelserver, see :func:`source_tree`) when given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def source_tree(rev: str | None) -> Iterator[str | None]:
    """The ``channelserver`` package as of git revision ``rev``, extracted into a temporary
    directory (``git archive``, read-only), or None for the working tree. Lets one compare
    two revisions, or measure a committed state while the working tree is being edited."""
    if not rev:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-src-") as tmp:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, "channelserver"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield tmp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process on 127.0.0.1, port 0, serving ``app``.

    Its output (the access log among it) goes to a file, as a deployment's logs go to a
    file or a journal: a pipe read by this process would take the CPU that the load
    generator needs (this process is not pinned), and the server, fed more slowly, would
    pay more CPU per request for the log than its own work costs (1.32-1.38x of no log
    measured through a pipe, 1.2x through a file). A thread reads the file until the line
    that names the port. The server is ready when it has answered one request (``GET /``,
    which both apps answer with 200)."""

    def __init__(
        self, spec: ServerSpec, app: str = APP, env: dict[str, str] | None = None, source: str | None = None
    ) -> None:
        self.spec = spec
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{spec.name}-", suffix=".log")  # noqa: SIM115
        self.port = 0
        self.named_port = threading.Event()
        listener: socket.socket | None = None
        fds: list[int] = []
        if spec.fixed_port:
            self.port = free_port()
            bind = ["--host", "127.0.0.1", "--port", str(self.port)]
        elif spec.ready is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            self.port = listener.getsockname()[1]
            fds = [listener.fileno()]
            bind = ["--fd", str(listener.fileno())]
        else:
            bind = ["--host", "127.0.0.1", "--port", "0"]
        try:
            self.proc = subprocess.Popen(
                spec.argv(bind, app),
                # ``python -m`` puts the working directory first on sys.path: a snapshot
                # must be it, or the working tree's channelserver would shadow it.
                cwd=source or ROOT,
                env=child_env(env, source),
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        finally:
            if listener is not None:
                listener.close()
        self.reader = threading.Thread(target=self._read, name=f"{spec.name}-output", daemon=True)
        self.reader.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        """Until the port is named (or the process is gone): its output so far, each 20 ms."""
        with open(self.log.name, "rb") as output:
            seen = b""
            while self.spec.ready is not None and not self.port:
                gone = self.proc.poll() is not None
                seen += output.read()
                match = self.spec.ready.search(seen)
                if match:
                    self.port = int(match.group(1))
                elif not gone:
                    time.sleep(0.02)
                    continue
                break
        self.named_port.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.port and (not self.named_port.wait(timeout) or not self.port):
            raise RuntimeError(f"{self.spec.name} did not name its port:\n{self.output()}")
        if self.spec.fixed_port:
            self._wait_listening(timeout)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(HTTP_GET)
                answer = sock.recv(65536)
        except OSError as exc:
            raise RuntimeError(f"{self.spec.name} did not answer: {exc}\n{self.output()}") from None
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self.spec.name} answered {answer[:200]!r}\n{self.output()}")

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.spec.name} is not listening on {self.port}:\n{self.output()}") from None
                time.sleep(0.05)

    def pin(self, cpus: set[int]) -> None:
        """Every thread of the server and of its children onto ``cpus``."""
        procs = [self.pid, *(child.pid for child in psutil.Process(self.pid).children(recursive=True))]
        for pid in procs:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(int(tid), cpus)

    def output(self, most: int = 65536) -> str:
        """The last ``most`` bytes of its output."""
        with open(self.log.name, "rb") as output:
            output.seek(max(0, os.path.getsize(self.log.name) - most))
            return output.read().decode("utf-8", "replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.log.close()
        return self.proc.returncode


# -- one measurement -----------------------------------------------------------------------
def run_load(
    server: Server,
    workload: str,
    *,
    seconds: float,
    warmup: int,
    connections: int,
    profile_control: bool = False,
    cpus: str = "",
) -> dict[str, Any]:
    argv = [
        *(PYTHON, "-m", "bench.load", "--port", str(server.port), "--pid", str(server.pid)),
        *("--workload", workload, "--connections", str(connections), "--warmup", str(warmup)),
        *("--seconds", str(seconds), "--max-ops", str(MAX_OPS[workload])),
    ]
    if profile_control:
        argv.append("--profile-control")
    if cpus:
        argv += ["--cpus", cpus]
    done = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0 or not done.stdout.strip():
        tail = server.output()[-2000:]
        raise RuntimeError(f"load generator failed ({server.spec.name}, {workload}): {done.stderr.strip()}\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["ops"] <= 0:
        raise RuntimeError(f"no operations completed ({server.spec.name}, {workload})")
    return result


def run_parser(what: str, seconds: float) -> dict[str, Any]:
    argv = [PYTHON, "-m", "bench.parsers", "--what", what, "--seconds", str(seconds)]
    done = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"parser benchmark {what} failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- summaries -----------------------------------------------------------------------------
@dataclass
class Cell:
    """The repetitions of one (server, workload) pair."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def us_per_op(self) -> list[float]:
        key = "server_cpu" if self.runs and "server_cpu" in self.runs[0] else "cpu"
        return [run[key] / run["ops"] * 1e6 for run in self.runs]

    def ops_per_s(self) -> list[float]:
        return [run["ops"] / run["wall"] for run in self.runs if run.get("wall")]

    def summary(self, statistic: str = "median") -> dict[str, Any]:
        """``us_cpu_per_op`` is the median of the repetitions, or their minimum (noise on a
        shared machine only ever adds CPU time: the minimum is the least disturbed run)."""
        us = self.us_per_op()
        if not us:
            return {"error": self.error}
        median = statistics.median(us)
        out: dict[str, Any] = {
            "us_cpu_per_op": min(us) if statistic == "min" else median,
            "us_cpu_per_op_median": median,
            "us_cpu_per_op_min": min(us),
            "us_cpu_per_op_max": max(us),
            "spread": (max(us) - min(us)) / median if median else 0.0,
            "reps": len(us),
        }
        rates = self.ops_per_s()
        if rates and "server_cpu" in self.runs[0]:
            out["ops_per_s"] = statistics.median(rates)
            out["us_client_cpu_per_op"] = statistics.median(run["client_cpu"] / run["ops"] * 1e6 for run in self.runs)
            out["sys_share"] = statistics.median(
                run["server_sys"] / run["server_cpu"] for run in self.runs if run["server_cpu"]
            )
        if self.error:
            out["error"] = self.error
        return out


def fmt_us(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    if "us_cpu_per_op" not in summary:
        return "error"
    return f"{summary['us_cpu_per_op']:.1f} ±{summary['spread'] * 50:.0f}%"


def fmt_rate(summary: dict[str, Any] | None) -> str:
    if not summary or "ops_per_s" not in summary:
        return "-"
    return f"{summary['ops_per_s']:,.0f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "us_cpu_per_op" not in a or "us_cpu_per_op" not in b:
        return None
    return float(a["us_cpu_per_op"] / b["us_cpu_per_op"])


def decomposition(cells: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Per request and per message: the floor (sockets and loop), the parser's own work
    (in-process, for comparison), and what each server spends above the floor: its
    parsing, ASGI layer, the app and its own code. channelserver reads plain request heads
    and small frames without the parsers, so its figure above the floor can be less than
    the parser's own work."""

    def us(name: str, workload: str) -> float | None:
        value = cells.get(name, {}).get(workload, {}).get("us_cpu_per_op")
        return float(value) if value is not None else None

    columns = [("http", "h11-server"), ("ws", "wsproto-server")]
    floors = [us("floor", w) for w, _ in columns]
    parsers = [us(p, w) for w, p in columns]
    if all(v is None for v in floors):
        return []
    rows = [
        ["floor: sockets + event loop, canned bytes", *(f"{v:.1f}" if v is not None else "-" for v in floors)],
        ["parser's own work, server side", *(f"{v:.1f}" if v is not None else "-" for v in parsers)],
    ]
    for name in ("channelserver", "uvicorn"):
        above = []
        for (workload, _), floor in zip(columns, floors, strict=True):
            total = us(name, workload)
            above.append(f"{total - floor:.1f}" if total is not None and floor is not None else "-")
        rows.append([f"{name} above the floor: parsing, ASGI, app, own code", *above])
    return ["", table(rows, ["us CPU per operation", "request", "ws message"])]


#: Issue 16: the default (text) access log costs at most this much of no log per request,
#: and ``--metrics`` this much of no metrics per request and per WebSocket message.
ACCESS_LOG_TARGET = 1.3
METRICS_TARGET = 1.05


def paired(runs: dict[str, dict[str, list[dict[str, Any]]]], name: str, workload: str) -> float | None:
    """The median over repetitions of ``name``'s CPU per operation over channelserver's in
    the same repetition. The two ran one after the other (the order rotates), so a drift of
    the machine's speed between repetitions, which moves a ratio of medians by several
    per cent, cancels out."""
    ours, base = runs.get(name, {}).get(workload, []), runs.get("channelserver", {}).get(workload, [])
    ratios = [
        (a["server_cpu"] / a["ops"]) / (b["server_cpu"] / b["ops"])
        for a, b in zip(ours, base, strict=False)
        if a.get("ops") and a.get("server_cpu") and b.get("ops") and b.get("server_cpu")
    ]
    return statistics.median(ratios) if ratios else None


def overheads(
    cells: dict[str, dict[str, dict[str, Any]]],
    skipped: dict[str, str],
    runs: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
) -> list[str]:
    """channelserver with its access log (text, JSON) and with ``--metrics``, side by
    side with the same server without them: server CPU per operation, and the ratio, the
    median of the repetitions' paired ratios (see :func:`paired`) when the runs are given,
    else the ratio of the cells."""
    base = cells.get("channelserver", {})
    rows = []
    found: dict[tuple[str, str], float] = {}
    for name, what in VARIANTS.items():
        row = cells.get(name)
        if row is None:
            continue
        line = [what]
        for workload in ("http", "ws"):
            value = paired(runs, name, workload) if runs else None
            if value is None:
                value = ratio(row.get(workload), base.get(workload))
            if value is not None:
                found[name, workload] = value
            line.append(f"{fmt_us(row.get(workload))} = {value:.2f}x" if value is not None else "-")
        rows.append(line)
    notes = [f"  {VARIANTS[name]}: skipped, {why}" for name, why in skipped.items() if name in VARIANTS]
    if not rows:
        return ["", *notes] if notes else []
    rows.insert(0, ["no access log (channelserver)", fmt_us(base.get("http")), fmt_us(base.get("ws"))])
    how = "x: median of the repetitions' paired ratios" if runs else "x: ratio of the cells"
    out = [
        "",
        table(rows, ["channelserver, us CPU and x of no access log", "request", "ws message"]),
        f"  ({how})",
        *notes,
    ]
    checks = [
        ("text access log / no log, per request", found.get(("channelserver-log", "http")), ACCESS_LOG_TARGET),
        ("--metrics / none, per request", found.get(("channelserver-metrics", "http")), METRICS_TARGET),
        ("--metrics / none, per ws message", found.get(("channelserver-metrics", "ws")), METRICS_TARGET),
    ]
    for what, value, target in checks:
        if value is not None:
            verdict = "met" if value <= target else "MISSED"
            out.append(f"  {what}: {value:.2f}x (target <= {target}x: {verdict})")
    return out


def channels_tables(results: dict[str, Any]) -> list[str]:
    """The Channels workloads: server CPU per operation, then operations per second."""
    cells: dict[str, dict[str, dict[str, Any]]] = results["summary"]
    ours = [w for w in results["workloads"] if w in CHANNELS_WORKLOADS]
    names = [name for name in results["servers"] if any(w in cells.get(name, {}) for w in ours)]
    if not ours or not names:
        return []
    units = ", ".join(f"{TITLES[w]}: per {UNITS[w]}" for w in ours)
    out = ["", f"Channels workloads (bench/djproject), us of server CPU per operation ({units}):"]
    header = ["server", "loop", *(TITLES[w] for w in ours)]
    rows = [[SERVERS[n].label, SERVERS[n].loop, *(fmt_us(cells.get(n, {}).get(w)) for w in ours)] for n in names]
    out.append(table(rows, header))
    out += ["", "Channels workloads, operations per second:"]
    rows = [[SERVERS[n].label, SERVERS[n].loop, *(fmt_rate(cells.get(n, {}).get(w)) for w in ours)] for n in names]
    out.append(table(rows, ["server", "loop", *(TITLES[w] for w in ours)]))
    pinned = results["plan"].get("pinned")
    if pinned:
        out.append(
            f"servers pinned to CPU {pinned['server']}, load generator and redis-server to CPUs {pinned['load']}"
        )
    return out


def report(results: dict[str, Any]) -> tuple[str, bool]:
    """The printed tables and ratios; the flag says whether both targets were met."""
    cells: dict[str, dict[str, dict[str, Any]]] = results["summary"]
    workloads: list[str] = results["workloads"]
    out: list[str] = []
    main_header = ["server", "loop", "us CPU/request", "us CPU/ws message", "req/s", "msg/s"]
    rows = []
    for name in results["servers"]:
        spec = SERVERS[name]
        row = cells.get(name, {})
        if "http" not in row and "ws" not in row:
            continue
        rows.append([spec.label, spec.loop, fmt_us(row.get("http")), fmt_us(row.get("ws"))])
        rows[-1] += [fmt_rate(row.get("http")), fmt_rate(row.get("ws"))]
    for what, label in PARSER_LABELS.items():
        summary = cells.get(what, {}).get(PARSERS[what])
        if summary is None:
            continue
        http = fmt_us(summary) if PARSERS[what] == "http" else "-"
        ws = fmt_us(summary) if PARSERS[what] == "ws" else "-"
        rows.append([label, "in-process", http, ws, "-", "-"])
    if rows:
        out.append(table(rows, main_header))

    extra = [w for w in workloads if w in RAW_WORKLOADS and w not in ("http", "ws")]
    if extra:
        header = ["server"]
        for w in extra:
            header += [f"us CPU/{UNITS[w]}", f"{w}/s"]
        rows = []
        for name in results["servers"]:
            if not set(extra) & set(SERVERS[name].workloads):
                continue
            row = cells.get(name, {})
            line = [f"{SERVERS[name].label} ({SERVERS[name].loop})"]
            for w in extra:
                line += [fmt_us(row.get(w)), fmt_rate(row.get(w))]
            rows.append(line)
        out.append("")
        out.append(table(rows, header))
    out.extend(channels_tables(results))

    out.append("")
    out.append(f"ratios of server CPU per operation ({results['statistic']}s):")
    met = True
    cs = cells.get("channelserver", {})
    for workload, (floor, target) in TARGETS.items():
        value = ratio(cs.get(workload), cells.get(floor, {}).get(workload))
        if value is None:
            continue
        verdict = "met" if value <= target else "MISSED"
        met = met and value <= target
        out.append(
            f"  channelserver / {PARSER_LABELS[floor]:<26} {UNITS[workload]:<14} {value:5.2f}x  (target <= {target}x: {verdict})"
        )
    for other in ("daphne", "uvicorn", "uvicorn-std", "granian"):
        for workload in workloads:
            value = ratio(cs.get(workload), cells.get(other, {}).get(workload))
            if value is not None:
                what = workload if workload in CHANNELS_WORKLOADS else UNITS[workload]
                out.append(f"  channelserver / {other:<26} {what:<14} {value:5.2f}x")
    out.extend(decomposition(cells))
    out.extend(overheads(cells, results.get("skipped", {}), results.get("runs")))
    out.extend(before_after(results))
    shares = []
    for name in results["servers"]:
        parts = [
            f"{w} {cells[name][w]['sys_share'] * 100:.0f}%"
            for w in workloads
            if "sys_share" in cells.get(name, {}).get(w, {})
        ]
        if parts:
            shares.append(f"{name} {', '.join(parts)}")
    if shares:
        out.append("")
        out.append("kernel (sys) share of the server CPU time, sockets and event loop, no parser in-process pays it:")
        out.extend(f"  {line}" for line in shares)
    out.append("")
    refs = ", ".join(f"{name} {'/'.join(f'{v:.0f}' for v in figures.values())}" for name, figures in REFERENCE.items())
    out.append(f"reference (issue 2, us per request/ws message on a 2-core machine): {refs}")
    out.append(
        f"us CPU: the {results['statistic']} of {results['plan']['reps']} repetitions; "
        "±: half their spread (max-min) around the median; "
        f"load average {results['loadavg_before'][0]:.1f} before, {results['loadavg_after'][0]:.1f} after"
    )
    return "\n".join(out), met


#: Marks the name of a server run from the ``--baseline`` revision: ``channelserver@base``.
BASELINE_MARK = "@base"


def add_baseline(names: list[str], rev: str) -> list[str]:
    """Each channelserver server of ``names`` followed by the same server as of ``rev``,
    so the two are measured in the same run, interleaved."""
    out: list[str] = []
    for name in names:
        out.append(name)
        if name.startswith("channelserver"):
            spec = SERVERS[name]
            base = name + BASELINE_MARK
            SERVERS[base] = dataclasses.replace(spec, name=base, label=f"{spec.label} @ {rev}")
            out.append(base)
    return out


def before_after(results: dict[str, Any]) -> list[str]:
    """Server CPU per operation of the working tree over the ``--baseline`` revision's."""
    if not results.get("baseline"):
        return []
    cells: dict[str, dict[str, dict[str, Any]]] = results["summary"]
    lines = ["", f"this tree / baseline {results['baseline']} (server CPU per operation; over 1.05 is 5% slower):"]
    for name in results["servers"]:
        base = cells.get(name + BASELINE_MARK)
        if base is None:
            continue
        for workload in results["workloads"]:
            value = ratio(cells.get(name, {}).get(workload), base.get(workload))
            if value is not None:
                flag = "" if value <= 1.05 else "  SLOWER"
                lines.append(f"  {name:<24} {UNITS[workload]:<14} {value:5.2f}x{flag}")
    return lines


# -- the whole run -------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    reps: int
    seconds: float
    warmup_seconds: float
    warmup_ops: int
    parser_seconds: float


FULL = Plan(reps=5, seconds=2.0, warmup_seconds=1.0, warmup_ops=300, parser_seconds=1.0)
QUICK = Plan(reps=3, seconds=0.5, warmup_seconds=0.2, warmup_ops=200, parser_seconds=0.3)


def versions() -> dict[str, str]:
    found = {}
    for dist in (
        *("channelserver", "h11", "wsproto", "uvicorn", "daphne", "twisted", "autobahn", "uvloop", "psutil"),
        *("httptools", "websockets", "granian", "django", "channels", "channels-redis", "redis"),
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def revision(rev: str | None) -> str:
    """Which channelserver was measured: the commit, and whether the tree had edits."""
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", rev or "HEAD"], capture_output=True, text=True).stdout
        if rev:
            return commit.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "channelserver"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return commit.strip() + (" + working tree edits" if dirty.strip() else "")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def redis_server(cpus: set[int] | None = None) -> Iterator[str | None]:
    """A redis-server of this run's own (a temporary directory, no persistence, a free
    port); yields its URL, or None when ``redis-server`` is not installed (an error when
    ``CI=true``). ``make system-deps`` installs it."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("redis-server is not installed (make system-deps installs it)")
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", tmp, "--logfile", str(Path(tmp) / "redis.log")]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(64).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = Path(tmp) / "redis.log"
                    raise RuntimeError(f"redis-server did not start: {log.read_text() if log.exists() else ''}")
                time.sleep(0.05)
            if cpus:
                os.sched_setaffinity(proc.pid, cpus)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pinning(pin: bool) -> tuple[set[int] | None, str]:
    """With ``--pin``: the CPU every server runs on (the last one), and the others, for the
    load generator and redis-server, as ``bench/load.py --cpus`` takes them."""
    if not pin:
        return None, ""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError("--pin needs at least two CPUs")
    return {cpus[-1]}, ",".join(str(cpu) for cpu in cpus[:-1])


def select_pairs(args: argparse.Namespace) -> tuple[list[str], dict[str, list[str]]]:
    """The servers in the order they start, and which of them run each workload: the
    ``--servers`` given, or each workload's default servers; only where a server's spec
    allows the workload."""
    per_workload: dict[str, list[str]] = {}
    for workload in args.workloads:
        wanted = args.servers if args.servers is not None else list(default_servers(workload))
        if args.servers is None and args.baseline:
            wanted = add_baseline(wanted, args.baseline)
        per_workload[workload] = [name for name in wanted if workload in SERVERS[name].workloads]
    names = list(dict.fromkeys(name for servers in per_workload.values() for name in servers))
    return names, per_workload


def source_of(args: argparse.Namespace, name: str) -> str | None:
    """The snapshot a server runs from (None: the working tree, or not channelserver)."""
    if BASELINE_MARK in name:
        return str(args.baseline_source)
    return str(args.source) if args.source and name.startswith("channelserver") else None


_FLAGS: dict[tuple[str | None, str], bool] = {}


def supports(flag: str, source: str | None) -> bool:
    """Whether ``python -m channelserver --help``, as of ``source``, lists ``flag``."""
    key = (source, flag)
    if key not in _FLAGS:
        done = subprocess.run(
            [PYTHON, "-m", "channelserver", "--help"],
            cwd=source or ROOT,
            env=child_env(None, source),
            capture_output=True,
            text=True,
            timeout=60,
        )
        _FLAGS[key] = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout) is not None
    return _FLAGS[key]


def skip_unsupported(args: argparse.Namespace, names: list[str], per_workload: dict[str, list[str]]) -> dict[str, str]:
    """Take out of ``names`` and ``per_workload`` the servers whose channelserver lacks a
    flag their command line needs (``--metrics`` before it existed); say which, and why."""
    skipped: dict[str, str] = {}
    for name in list(names):
        flag = SERVERS[name].needs_flag
        if flag is None or supports(flag, source_of(args, name)):
            continue
        skipped[name] = f"`python -m channelserver --help` has no {flag}"
        say(f"skipping {name}: {skipped[name]}")
        names.remove(name)
        for servers in per_workload.values():
            if name in servers:
                servers.remove(name)
    return skipped


def benchmark(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    reps = args.reps or plan.reps
    seconds = args.seconds or plan.seconds
    workloads: list[str] = args.workloads
    needs_redis = any(w in NEEDS_REDIS for w in workloads)
    server_cpus, load_cpus = pinning(args.pin)
    with contextlib.ExitStack() as stack:
        redis_url = (
            stack.enter_context(redis_server({int(c) for c in load_cpus.split(",")} if load_cpus else None))
            if needs_redis
            else None
        )
        if needs_redis and redis_url is None:
            say("redis-server not found (make system-deps installs it): skipping " + ", ".join(NEEDS_REDIS))
            workloads = [w for w in workloads if w not in NEEDS_REDIS]
        args.workloads = workloads
        return measure(args, plan, reps, seconds, redis_url, server_cpus, load_cpus)


def measure(
    args: argparse.Namespace,
    plan: Plan,
    reps: int,
    seconds: float,
    redis_url: str | None,
    server_cpus: set[int] | None,
    load_cpus: str,
) -> int:
    workloads: list[str] = args.workloads
    names, per_workload = select_pairs(args)
    skipped = skip_unsupported(args, names, per_workload)
    parsers = [what for what, workload in PARSERS.items() if workload in workloads]
    connections = {w: args.connections or CONNECTIONS[w] for w in workloads}
    cells: dict[str, dict[str, Cell]] = {}
    started = time.monotonic()
    loadavg_before = os.getloadavg()
    # One process per (server, app), started once for the whole run.
    servers: dict[tuple[str, str], Server] = {}
    try:
        for name in names:
            source = source_of(args, name)
            apps = dict.fromkeys(app_for(w) for w in workloads if name in per_workload[w])
            for app in apps:
                say(f"starting {name} ({app})")
                env = {"BENCH_REDIS_URL": redis_url} if redis_url and app == CHANNELS_APP else None
                server = Server(SERVERS[name], app=app, env=env, source=source)
                servers[name, app] = server
                if server_cpus:
                    server.pin(server_cpus)
        say("warm-up round")
        for workload in workloads:
            for name in per_workload[workload]:
                run_load(
                    servers[name, app_for(workload)],
                    workload,
                    seconds=plan.warmup_seconds,
                    warmup=plan.warmup_ops,
                    connections=connections[workload],
                    cpus=load_cpus,
                )
        for rep in range(reps):
            say(f"repetition {rep + 1}/{reps}")
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for workload in workloads:
                for name in order:
                    if name not in per_workload[workload]:
                        continue
                    cell = cells.setdefault(name, {}).setdefault(workload, Cell())
                    if cell.error:
                        continue
                    try:
                        result = run_load(
                            servers[name, app_for(workload)],
                            workload,
                            seconds=seconds,
                            warmup=plan.warmup_ops,
                            connections=connections[workload],
                            cpus=load_cpus,
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        cell.error = str(exc)
                        say(f"  {name} {workload}: {exc}")
                        continue
                    cell.runs.append(result)
            for what in parsers:
                cells.setdefault(what, {}).setdefault(PARSERS[what], Cell()).runs.append(
                    run_parser(what, plan.parser_seconds)
                )
    finally:
        for (name, app), server in servers.items():
            code = server.stop()
            if code not in (0, -signal.SIGTERM):
                say(f"{name} ({app}) exited with {code}")
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full",
        "seconds_total": time.monotonic() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": versions(),
        },
        "channelserver_source": revision(args.rev),
        "baseline": revision(args.baseline) if args.baseline else None,
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "plan": {
            "reps": reps,
            "seconds": seconds,
            "connections": connections,
            "warmup_ops": plan.warmup_ops,
            "pinned": {"server": sorted(server_cpus), "load": load_cpus} if server_cpus else None,
        },
        "servers": names,
        "skipped": skipped,
        "pairs": per_workload,
        "loops": {name: SERVERS[name].loop for name in names},
        "workloads": workloads,
        "statistic": args.statistic,
        "summary": {name: {w: cell.summary(args.statistic) for w, cell in row.items()} for name, row in cells.items()},
        "runs": {name: {w: cell.runs for w, cell in row.items()} for name, row in cells.items()},
    }
    text, met = report(results)
    results["targets_met"] = met
    print(text)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({results['seconds_total']:.0f}s)"
    )
    return 1 if args.check and not met else 0


# -- profile mode --------------------------------------------------------------------------
def area(filename: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    path = filename.replace(os.sep, "/")
    for marker, name in (
        ("/channelserver/protocol/", "channelserver.protocol"),
        ("/channelserver/server/", "channelserver.server"),
        ("/channelserver/", "channelserver (other)"),
        ("/h11/", "h11"),
        ("/wsproto/", "wsproto"),
        ("/bench/", "bench app"),
        ("/channels/", "channels"),
        ("/channels_redis/", "channels_redis"),
        ("/redis/", "redis-py"),
        ("/asgiref/", "asgiref"),
        ("/django/", "django"),
        ("/asyncio/", "asyncio"),
    ):
        if marker in path:
            return name
    if filename == "~":
        return "builtins (C)"
    return "other Python"


def short(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":
        return func
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", str(ROOT).replace(os.sep, "/") + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1] if "/" in path else path
            break
    return f"{path}:{line}({func})"


SPLIT_SERVER = "server: channelserver/*"
SPLIT_PARSERS = "server's parsers: h11, wsproto"
SPLIT_FRAMEWORK = "Channels, asgiref, Django, the app"
SPLIT_LOOP = "event loop: asyncio, selectors, uvloop, sockets"
SPLIT_OTHER = "other"
#: Builtins that mostly wait under the wall clock: the asyncio loop's epoll, and a thread
#: waiting for another (Django's sync middleware runs in a thread of its own per request).
SPLIT_WAITING = ("<method 'poll' of 'select.epoll' objects>", "<method 'acquire' of '_thread.lock' objects>")
_LOOP_BUILTINS = ("uvloop", "_asyncio.", "select.", "_socket.", "_contextvars.Context' objects>")


def split_part(filename: str, func: str) -> str | None:
    """The part of :func:`split_lines` a profiled function belongs to; None for a builtin
    (C) function whose time counts to whoever called it."""
    if filename == "~":
        return SPLIT_LOOP if any(marker in func for marker in _LOOP_BUILTINS) else None
    path = filename.replace(os.sep, "/")
    if "/channelserver/" in path:
        return SPLIT_SERVER
    if "/h11/" in path or "/wsproto/" in path:
        return SPLIT_PARSERS
    if any(marker in path for marker in ("/channels/", "/channels_redis/", "/asgiref/", "/django/", "/bench/")):
        return SPLIT_FRAMEWORK
    if any(marker in path for marker in ("/asyncio/", "/selectors.py", "/uvloop/", "/socket.py")):
        return SPLIT_LOOP
    return SPLIT_OTHER


def split_lines(
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]], ops: int, plain: float
) -> list[str]:
    """The profile's own time (tottime) per operation in four parts plus the parsers: the
    server's code, Channels/asgiref/Django (with the benchmark's consumers and view), the
    event loop, and the rest. A builtin C function counts to the part of its caller (a
    ``dict.get`` in Django is Django's), except the loop's own (uvloop's methods, the C
    Task and Future, select, socket methods). Waiting in ``epoll.poll`` (the asyncio loop)
    and in a lock's ``acquire`` (a thread waiting for another), mostly idle time under the
    wall clock, is left out; under uvloop the C loop itself is not seen by cProfile at all.
    Only the thread that serves the connections is profiled: the threads of
    ``sync_to_async`` (Django's middleware) are not. ``plain``: the process's CPU per
    operation measured without the profiler (all threads), which the last column shares out
    by these proportions."""
    parts = dict.fromkeys((SPLIT_SERVER, SPLIT_PARSERS, SPLIT_FRAMEWORK, SPLIT_LOOP, SPLIT_OTHER), 0.0)
    others: dict[str, float] = {}  # module of each "other" function (builtins: their caller's)
    idle = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, callers) in entries.items():
        if filename == "~" and func in SPLIT_WAITING:
            idle += tt
            continue
        part = split_part(filename, func)
        if part is not None:
            parts[part] += tt
            if part == SPLIT_OTHER:
                module = short((filename, 0, func)).split(":", 1)[0]
                others[module] = others.get(module, 0.0) + tt
            continue
        by_caller = {caller: figures[2] for caller, figures in callers.items()}
        charged = sum(by_caller.values())
        if charged <= 0:
            parts[SPLIT_OTHER] += tt
            continue
        for caller, caller_tt in by_caller.items():
            part = split_part(caller[0], caller[2]) or SPLIT_OTHER
            parts[part] += tt * caller_tt / charged
            if part == SPLIT_OTHER:
                module = short(caller).split(":", 1)[0]
                others[module] = others.get(module, 0.0) + tt * caller_tt / charged
    total = sum(parts.values())
    out = [
        "",
        f"split of the profiled time (builtins counted to their callers; {idle / ops * 1e6:.1f} us/op "
        "waiting in epoll.poll or a lock left out):",
    ]
    rows = [
        [name, f"{tt / ops * 1e6:.2f}", f"{tt / total * 100:.1f}%", f"{tt / total * plain:.1f}"]
        for name, tt in parts.items()
    ]
    rows.append(["total", f"{total / ops * 1e6:.2f}", "100%", f"{plain:.1f}"])
    out.append(table(rows, ["part", "profiled us/op", "share", "us/op of the CPU without profiler"]))
    top = sorted(others.items(), key=lambda item: -item[1])[:6]
    out.append("  other, by module (profiled us/op): " + ", ".join(f"{m} {tt / ops * 1e6:.1f}" for m, tt in top))
    return out


def profile(args: argparse.Namespace) -> int:
    workload: str = args.profile
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    spec = SERVERS[args.profile_server]
    server_cpus, load_cpus = pinning(args.pin)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-"))
        out = Path(tmp) / "channelserver.prof"
        env = {"BENCH_PROFILE_OUT": str(out), "BENCH_PROFILE_TIMER": args.profile_timer}
        env["BENCH_PROFILE_APP"] = app_for(workload)
        if workload in NEEDS_REDIS:
            load_set = {int(c) for c in load_cpus.split(",")} if load_cpus else None
            redis_url = stack.enter_context(redis_server(load_set))
            if redis_url is None:
                say(f"redis-server not found (make system-deps installs it): cannot profile {workload}")
                return 1
            env["BENCH_REDIS_URL"] = redis_url
        server = Server(spec, app="bench.profiled:app", env=env, source=args.source)
        try:
            if server_cpus:
                server.pin(server_cpus)
            connections = args.connections or CONNECTIONS[workload]
            plain = run_load(server, workload, seconds=1.0, warmup=300, connections=connections, cpus=load_cpus)
            result = run_load(
                server,
                workload,
                seconds=seconds,
                warmup=300,
                connections=connections,
                profile_control=True,
                cpus=load_cpus,
            )
        finally:
            server.stop()
        stats = pstats.Stats(str(out))
        out_dir = Path(args.output)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        saved = out_dir / f"profile-{workload}-{stamp}.prof"
        saved.write_bytes(out.read_bytes())
    lines: list[str] = []
    emit = lines.append
    ops = result["ops"]
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    emit(
        f"channelserver ({spec.loop}) under cProfile ({args.profile_timer} clock), {workload}: {ops} x {UNITS[workload]} in {result['wall']:.1f}s; "
        f"{result['server_cpu'] / ops * 1e6:.1f} us CPU per op with the profiler on "
        f"({total / ops * 1e6:.1f} us of it inside profiled functions)"
    )
    lines.extend(split_lines(entries, ops, plain["server_cpu"] / plain["ops"] * 1e6))
    by_area: dict[str, float] = {}
    for key, (_, _, tt, _, _) in entries.items():
        by_area[area(key[0])] = by_area.get(area(key[0]), 0.0) + tt
    emit("\ntottime by part of the stack, us per op:")
    for name, tt in sorted(by_area.items(), key=lambda item: -item[1]):
        emit(f"  {name:<24} {tt / ops * 1e6:8.2f}  {tt / total * 100:5.1f}%")
    rows = []
    ranked = sorted(entries.items(), key=lambda item: -item[1][2])
    for key, (_cc, nc, tt, ct, _) in ranked[: args.top]:
        rows.append([short(key), f"{nc / ops:.2f}", f"{tt / ops * 1e6:.2f}", f"{ct / ops * 1e6:.2f}", area(key[0])])
    emit(f"\ntop {args.top} functions by tottime (per op):")
    emit(table(rows, ["function", "calls", "tottime us", "cumtime us", "part"]))
    own = [item for item in ranked if area(item[0][0]).startswith("channelserver")][: args.top]
    rows = [
        [short(k), f"{nc / ops:.2f}", f"{tt / ops * 1e6:.2f}", f"{ct / ops * 1e6:.2f}"] for k, (_, nc, tt, ct, _) in own
    ]
    emit("\nchannelserver's own functions by tottime (per op):")
    emit(table(rows, ["function", "calls", "tottime us", "cumtime us"]))
    emit(f"\nsaved: {saved} (pstats; this text next to it as .txt)")
    text = "\n".join(lines)
    print(text)
    saved.with_suffix(".txt").write_text(text + "\n")
    return 0


# -- command line --------------------------------------------------------------------------
def csv(choices: Sequence[str], presets: dict[str, Sequence[str]] | None = None) -> Callable[[str], list[str]]:
    presets = presets or {}

    def parse(text: str) -> list[str]:
        items: list[str] = []
        for item in (item.strip() for item in text.split(",")):
            if item in presets:
                items.extend(presets[item])
            elif item in choices:
                items.append(item)
            elif item:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join([*presets, *choices])}")
        return list(dict.fromkeys(items))

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="channelserver vs Uvicorn vs Granian vs Daphne vs the parsers' own cost: "
        "server CPU time per operation and throughput, on a raw ASGI app (bench/apps.py) and on a "
        "Django + Channels project (bench/djproject). `make bench-channels` = --workloads channels --pin.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="Fewer and shorter repetitions (about a minute per kind of workload)."
    )
    parser.add_argument("--reps", type=int, default=0, help="Repetitions (default 5; 3 with --quick).")
    parser.add_argument("--seconds", type=float, default=0.0, help="Timed phase per repetition (default 2; 0.5 quick).")
    parser.add_argument(
        "--servers",
        type=csv(list(SERVERS)),
        default=None,
        help=f"Comma-separated, run on every workload they support (default: {', '.join(DEFAULT_SERVERS)} "
        f"for the raw workloads; {', '.join(DEFAULT_CHANNELS_SERVERS)} for the Channels ones).",
    )
    parser.add_argument(
        "--workloads",
        type=csv(WORKLOADS, PRESETS),
        default=list(WORKLOADS),
        help=f"Comma-separated workloads or presets: raw ({', '.join(RAW_WORKLOADS)}), channels "
        f"({', '.join(CHANNELS_WORKLOADS)}) or all (the default).",
    )
    parser.add_argument("--connections", type=int, default=0, help="Connections per workload (default per workload).")
    parser.add_argument("--output", default=str(RESULTS), help="Directory for the JSON results.")
    parser.add_argument(
        "--statistic",
        choices=["median", "min"],
        default="median",
        help="What a cell reports of its repetitions: the median (default) or the least disturbed one.",
    )
    parser.add_argument("--rev", help="Serve channelserver as of this git revision (default: the working tree).")
    parser.add_argument(
        "--baseline",
        help="Also serve each channelserver server as of this git revision, in the same run, "
        "and report this tree's CPU per operation over it.",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="Pin every server (all its threads and children) to the last CPU, the load generator and "
        "redis-server to the others.",
    )
    parser.add_argument("--check", action="store_true", help="Exit 1 when a target ratio is missed.")
    parser.add_argument(
        "--profile",
        choices=WORKLOADS,
        help="Profile channelserver on this workload instead; prints its time per operation split into "
        "server code, Channels/asgiref/Django, event loop and other.",
    )
    parser.add_argument(
        "--profile-server",
        choices=[
            "channelserver",
            "channelserver-asyncio",
            "channelserver-log",
            "channelserver-json",
            "channelserver-metrics",
        ],
        default="channelserver",
        help="Which channelserver command line --profile runs: the default one has no access log; "
        "channelserver-log and channelserver-json write it as text or JSON; channelserver-metrics counts "
        "for --metrics.",
    )
    parser.add_argument(
        "--profile-timer",
        choices=["cpu", "wall"],
        default="wall",
        help="cProfile's clock: wall (default, cheap) or this thread's CPU time (immune to a busy machine, "
        "but each reading is a system call, so call-heavy code looks heavier).",
    )
    parser.add_argument("--top", type=int, default=15, help="Functions listed by --profile.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline and args.servers is not None:
        args.servers = add_baseline(args.servers, args.baseline)
    with source_tree(args.rev) as args.source, source_tree(args.baseline) as args.baseline_source:
        if args.profile:
            return profile(args)
        return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
