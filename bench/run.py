"""``make bench``: channelserver, Uvicorn and Daphne side by side in one run, plus the
parsers' own cost, as server CPU time per operation and throughput.

Method (docs/performance.md says more):

- Every server serves the same raw ASGI app (:mod:`bench.apps`) from its own process,
  started by its command line on 127.0.0.1 port 0, access logs off; channelserver and
  Uvicorn are measured again with their access logs on (the defaults users run).
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

``--profile http|ws|...`` runs channelserver alone with cProfile on during the timed
phase and prints where its time goes per operation.
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import HTTP_GET, WORKLOADS  # noqa: E402

PYTHON = sys.executable
APP = "bench.apps:app"
RESULTS = ROOT / "bench" / "results"

#: Figures of issue 2 measured on a 2-core machine like this one (us of CPU per operation).
REFERENCE = {
    "daphne": {"http": 125.0, "ws": 56.0},
    "uvicorn": {"http": 72.0, "ws": 23.0},
    "h11-server": {"http": 42.0},
    "wsproto-server": {"ws": 12.0},
}
TARGETS = {"http": ("h11-server", 1.3), "ws": ("wsproto-server", 1.5)}

UNITS = {"http": "request", "ws": "ws message", "post64k": "64 KiB POST", "stream1m": "1 MiB response"}
CONNECTIONS = {"http": 8, "ws": 8, "post64k": 4, "stream1m": 4}
MAX_OPS = {"http": 200_000, "ws": 200_000, "post64k": 50_000, "stream1m": 10_000}
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
    off TCP_NODELAY and stalls its two-write responses, so it binds its own.)"""

    name: str
    label: str
    loop: str
    argv: Callable[[list[str], str], list[str]]
    ready: re.Pattern[bytes] | None
    workloads: tuple[str, ...] = WORKLOADS


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
        ServerSpec("channelserver-asyncio", "channelserver", "asyncio", _channelserver("--loop", "asyncio"), _CS_READY),
        ServerSpec("uvicorn-asyncio", "uvicorn h11/wsproto", "asyncio", _uvicorn("--loop", "asyncio"), _UV_READY),
    )
}
DEFAULT_SERVERS = ("channelserver", "uvicorn", "channelserver-log", "uvicorn-log", "daphne", "floor")


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


class Server:
    """One server process on 127.0.0.1, port 0, serving ``app``.

    A thread reads the process's output for its whole life (so a chatty server never
    blocks on a full pipe) and signals the line that names the port. The server is ready
    when it has answered one request."""

    def __init__(
        self, spec: ServerSpec, app: str = APP, env: dict[str, str] | None = None, source: str | None = None
    ) -> None:
        self.spec = spec
        self.lines: list[bytes] = []
        self.port = 0
        self.named_port = threading.Event()
        listener: socket.socket | None = None
        fds: list[int] = []
        if spec.ready is None:
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
                stdout=subprocess.PIPE,
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
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if not self.port and self.spec.ready is not None:
                match = self.spec.ready.search(line)
                if match:
                    self.port = int(match.group(1))
                    self.named_port.set()
        self.named_port.set()  # end of output: the process is gone

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.port and (not self.named_port.wait(timeout) or not self.port):
            raise RuntimeError(f"{self.spec.name} did not name its port:\n{self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(HTTP_GET)
                answer = sock.recv(65536)
        except OSError as exc:
            raise RuntimeError(f"{self.spec.name} did not answer: {exc}\n{self.output()}") from None
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self.spec.name} answered {answer[:200]!r}\n{self.output()}")

    def output(self) -> str:
        return b"".join(self.lines).decode("utf-8", "replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
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
) -> dict[str, Any]:
    argv = [
        *(PYTHON, "-m", "bench.load", "--port", str(server.port), "--pid", str(server.pid)),
        *("--workload", workload, "--connections", str(connections), "--warmup", str(warmup)),
        *("--seconds", str(seconds), "--max-ops", str(MAX_OPS[workload])),
    ]
    if profile_control:
        argv.append("--profile-control")
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
        rows.append([spec.label, spec.loop, fmt_us(row.get("http")), fmt_us(row.get("ws"))])
        rows[-1] += [fmt_rate(row.get("http")), fmt_rate(row.get("ws"))]
    for what, label in PARSER_LABELS.items():
        summary = cells.get(what, {}).get(PARSERS[what])
        if summary is None:
            continue
        http = fmt_us(summary) if PARSERS[what] == "http" else "-"
        ws = fmt_us(summary) if PARSERS[what] == "ws" else "-"
        rows.append([label, "in-process", http, ws, "-", "-"])
    out.append(table(rows, main_header))

    extra = [w for w in workloads if w not in ("http", "ws")]
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
    for other in ("daphne", "uvicorn"):
        for workload in workloads:
            value = ratio(cs.get(workload), cells.get(other, {}).get(workload))
            if value is not None:
                out.append(f"  channelserver / {other:<26} {UNITS[workload]:<14} {value:5.2f}x")
    out.extend(decomposition(cells))
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
    for dist in ("channelserver", "h11", "wsproto", "uvicorn", "daphne", "twisted", "autobahn", "uvloop", "psutil"):
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


def benchmark(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    reps = args.reps or plan.reps
    seconds = args.seconds or plan.seconds
    names: list[str] = args.servers
    workloads: list[str] = args.workloads
    parsers = [what for what, workload in PARSERS.items() if workload in workloads]
    connections = {w: args.connections or CONNECTIONS[w] for w in workloads}
    cells: dict[str, dict[str, Cell]] = {}
    started = time.monotonic()
    loadavg_before = os.getloadavg()
    servers: dict[str, Server] = {}
    try:
        for name in names:
            say(f"starting {name}")
            source = args.source if name.startswith("channelserver") else None
            if BASELINE_MARK in name:
                source = args.baseline_source
            servers[name] = Server(SERVERS[name], source=source)
        say("warm-up round")
        for workload in workloads:
            for server in servers.values():
                if workload not in server.spec.workloads:
                    continue
                run_load(
                    server,
                    workload,
                    seconds=plan.warmup_seconds,
                    warmup=plan.warmup_ops,
                    connections=connections[workload],
                )
        for rep in range(reps):
            say(f"repetition {rep + 1}/{reps}")
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for workload in workloads:
                for name in order:
                    if workload not in SERVERS[name].workloads:
                        continue
                    cell = cells.setdefault(name, {}).setdefault(workload, Cell())
                    if cell.error:
                        continue
                    try:
                        result = run_load(
                            servers[name],
                            workload,
                            seconds=seconds,
                            warmup=plan.warmup_ops,
                            connections=connections[workload],
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
        for name, server in servers.items():
            code = server.stop()
            if code not in (0, -signal.SIGTERM):
                say(f"{name} exited with {code}")
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
        "plan": {"reps": reps, "seconds": seconds, "connections": connections, "warmup_ops": plan.warmup_ops},
        "servers": names,
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


def profile(args: argparse.Namespace) -> int:
    workload: str = args.profile
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    spec = SERVERS[args.profile_server]
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        out = Path(tmp) / "channelserver.prof"
        server = Server(
            spec,
            app="bench.profiled:app",
            env={"BENCH_PROFILE_OUT": str(out), "BENCH_PROFILE_TIMER": args.profile_timer},
            source=args.source,
        )
        try:
            connections = args.connections or CONNECTIONS[workload]
            run_load(server, workload, seconds=1.0, warmup=300, connections=connections)
            result = run_load(
                server, workload, seconds=seconds, warmup=300, connections=connections, profile_control=True
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
        f"channelserver ({spec.loop}) under cProfile ({args.profile_timer} clock), {workload}: {ops} {UNITS[workload]}s in {result['wall']:.1f}s; "
        f"{result['server_cpu'] / ops * 1e6:.1f} us CPU per op with the profiler on "
        f"({total / ops * 1e6:.1f} us of it inside profiled functions)"
    )
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
def csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        for item in items:
            if item not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="channelserver vs Uvicorn (h11/wsproto) vs Daphne vs the parsers' own cost: "
        "server CPU time per operation and throughput.",
    )
    parser.add_argument("--quick", action="store_true", help="Fewer and shorter repetitions (about a minute).")
    parser.add_argument("--reps", type=int, default=0, help="Repetitions (default 5; 3 with --quick).")
    parser.add_argument("--seconds", type=float, default=0.0, help="Timed phase per repetition (default 2; 0.5 quick).")
    parser.add_argument("--servers", type=csv(list(SERVERS)), default=list(DEFAULT_SERVERS), help="Comma-separated.")
    parser.add_argument("--workloads", type=csv(WORKLOADS), default=list(WORKLOADS), help="Comma-separated.")
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
    parser.add_argument("--check", action="store_true", help="Exit 1 when a target ratio is missed.")
    parser.add_argument("--profile", choices=WORKLOADS, help="Profile channelserver on this workload instead.")
    parser.add_argument("--profile-server", choices=["channelserver", "channelserver-asyncio"], default="channelserver")
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
    if args.baseline:
        args.servers = add_baseline(args.servers, args.baseline)
    with source_tree(args.rev) as args.source, source_tree(args.baseline) as args.baseline_source:
        if args.profile:
            return profile(args)
        return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
