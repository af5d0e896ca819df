"""Run the Autobahn|Testsuite fuzzing client against WebSocket echo servers.

Each server is a real subprocess on 127.0.0.1 (port 0) serving the raw ASGI echo app of
``echo_app.py``; ``wstest -m fuzzingclient`` connects to it, runs the RFC 6455 cases and
writes ``index.json``, which is read back here. A case passes when its behaviour is OK,
NON-STRICT, INFORMATIONAL or UNIMPLEMENTED (the last one: permessage-deflate cases against
a server that does not negotiate it); anything else (FAILED, WRONG CODE, UNCLEAN, ...)
is a deviation.

By hand::

    python tests/autobahn/run.py                 # the quick case set, all three servers
    python tests/autobahn/run.py --full          # every case: 1-7, 9, 10, 12, 13
    python tests/autobahn/run.py --full --server channelserver --keep /tmp/report

``wstest`` runs only on Python 2.7 and lives in its own virtualenv, made by
``bash tests/autobahn/install.sh`` (at ``.venv-autobahn``); ``$AUTOBAHN_WSTEST`` names
another one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, channelserver, daphne, uvicorn  # noqa: E402

APP = "tests.autobahn.echo_app:application"
DEFAULT_WSTEST = ROOT / ".venv-autobahn" / "bin" / "wstest"
INSTALL_HINT = "bash tests/autobahn/install.sh"

#: Behaviours that conform: OK, or allowed by the RFC (NON-STRICT), or only reported
#: (INFORMATIONAL), or an optional feature the server does not offer (UNIMPLEMENTED).
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"})

#: Every case the fuzzing client has: 1-7 (framing, pings, reserved bits, opcodes,
#: fragmentation, UTF-8, close), 9 (limits and performance), 10 (auto-fragmentation),
#: 12 and 13 (permessage-deflate).
FULL_CASES = ("*",)

#: The set CI runs: every case of 1-7, 9 and 10, and two cases of each permessage-deflate
#: group (12.1-12.5: five kinds of payload with the default offer; 13.1-13.7: each
#: combination of ``no_context_takeover`` and ``max_window_bits`` the client offers):
#: case 1 (1000 messages of 16 bytes, so the compression context is carried across many
#: messages) and case 11 (1000 messages of 8 KiB sent as 256-byte fragments). The other
#: cases of 12 and 13 send the same kinds of message with larger payloads, 1000 of them per
#: case of up to 128 KiB each: they cost about 15 minutes on a 2-core machine, the rest of
#: the suite less than a minute.
QUICK_CASES = (
    "1.*",
    "2.*",
    "3.*",
    "4.*",
    "5.*",
    "6.*",
    "7.*",
    "9.*",
    "10.*",
    *(f"12.{group}.{case}" for group in range(1, 6) for case in (1, 11)),
    *(f"13.{group}.{case}" for group in range(1, 8) for case in (1, 11)),
)

SERVERS: dict[str, Callable[..., ServerProcess]] = {
    "channelserver": channelserver,
    "uvicorn": uvicorn,
    "daphne": daphne,
}

#: Flags each server gets: the same 16 MiB message limit for all three (uvicorn's default;
#: channelserver's and Daphne's default is 1 MiB, which the 4-16 MiB messages of cases 9.1.4
#: and on exceed), so the table compares protocol handling, not limits.
SERVER_FLAGS: dict[str, tuple[str, ...]] = {
    "channelserver": ("--ws-max-size", "16777216"),
    "uvicorn": ("--ws-max-size", "16777216"),
    "daphne": ("--websocket-max-message-size", "16777216", "--websocket-max-frame-size", "16777216"),
}

#: Column order of the table.
BEHAVIOURS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "WRONG CODE", "UNCLEAN", "MISSING")


@dataclass
class Case:
    """One case's outcome, as index.json has it."""

    id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    report: Path | None = None

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING


@dataclass
class Result:
    """All cases one server was run through, and what went wrong around them."""

    server: str
    cases: list[Case]
    seconds: float
    outdir: Path
    #: How many cases wstest said it would run; fewer in the report means it gave up.
    planned: int
    server_output: str = ""
    #: The server's exit code when it exited before the run was over.
    server_exit: int | None = None
    #: What wstest said when it could not connect at all (it stops there).
    connect_failure: str = ""
    counts: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Counter(case.behavior for case in self.cases)
        if self.missing:
            self.counts["MISSING"] = self.missing

    @property
    def failures(self) -> list[Case]:
        return [case for case in self.cases if not case.passed]

    @property
    def missing(self) -> int:
        return max(0, self.planned - len(self.cases))

    @property
    def problems(self) -> list[str]:
        """What makes the run fail besides failed cases: the server died, cases never ran."""
        found = []
        if self.server_exit is not None:
            found.append(f"{self.server} exited with {self.server_exit} before the run was over")
        if self.missing:
            found.append(
                f"{self.missing} of {self.planned} cases never ran: {self.connect_failure or 'no reason given'}"
            )
        return found


class WstestMissing(RuntimeError):
    """The fuzzing client is not installed where it is looked for."""


def find_wstest() -> Path:
    """``$AUTOBAHN_WSTEST``, else ``.venv-autobahn/bin/wstest``, else ``wstest`` on PATH."""
    named = os.environ.get("AUTOBAHN_WSTEST")
    candidates = [Path(named)] if named else [DEFAULT_WSTEST]
    if not named and (on_path := shutil.which("wstest")):
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise WstestMissing(f"Autobahn|Testsuite's wstest not found (tried {tried}); install it with: {INSTALL_HINT}")


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort "9.10.2" after "9.2.1"."""
    return tuple(int(part) for part in case_id.split("."))


def read_index(outdir: Path, agent: str) -> list[Case]:
    """The cases of ``agent`` in ``outdir/index.json``, in case order."""
    index = json.loads((outdir / "index.json").read_text())
    cases = [
        Case(
            id=case_id,
            behavior=entry["behavior"],
            behavior_close=entry["behaviorClose"],
            duration_ms=int(entry.get("duration", 0)),
            report=outdir / entry["reportfile"] if entry.get("reportfile") else None,
        )
        for case_id, entry in index[agent].items()
    ]
    return sorted(cases, key=lambda case: case_key(case.id))


def _wstest_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # the Python 3 paths of this process mean nothing to Python 2.7
    return env


def run_fuzzingclient(
    wstest: Path,
    server: ServerProcess,
    agent: str,
    outdir: Path,
    cases: Sequence[str],
    exclude: Sequence[str] = (),
    timeout: float = 3600.0,
) -> tuple[int, str]:
    """Run ``wstest -m fuzzingclient`` once against ``server``; its log goes to outdir/wstest.log.

    While wstest runs, the server's output is read as it comes: a server whose log pipe
    is left unread blocks in its next write to stderr once the pipe's 64 KiB are full,
    and from then on answers nothing (an access-log line per case fills it in about 500
    cases). Returns how many cases wstest planned to run and the line it stopped on if it
    could not connect (wstest ends the run at the first connection that fails at the TCP
    level)."""
    outdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": server.ws_url}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    deadline = time.monotonic() + timeout
    with open(outdir / "wstest.log", "wb") as log:
        proc = subprocess.Popen(
            [str(wstest), "--mode", "fuzzingclient", "--spec", str(spec_path)],
            cwd=outdir,
            env=_wstest_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"wstest still running after {timeout:.0f}s against {agent}")
                if server.proc.poll() is None:
                    server.drain_output(0.5)  # reads the server's log while waiting half a second
                else:  # the server is gone (reported by the caller); wait for wstest alone
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log_text = (outdir / "wstest.log").read_text(errors="replace")
    if proc.returncode != 0 or not (outdir / "index.json").exists():
        raise RuntimeError(f"wstest exited with {proc.returncode} and no report for {agent}:\n{log_text[-3000:]}")
    planned = re.search(r"will run (\d+) test cases", log_text)
    failure = re.search(r"^Connection to \S+ failed.*$", log_text, re.MULTILINE)
    return int(planned.group(1)) if planned else 0, failure.group(0) if failure else ""


def run_server(
    name: str,
    outdir: Path,
    cases: Sequence[str],
    exclude: Sequence[str] = (),
    wstest: Path | None = None,
    flags: Sequence[str] = (),
    timeout: float = 3600.0,
) -> Result:
    """Start server ``name`` with the echo app, fuzz it, stop it, and read the report.

    The server's log is kept in ``outdir/server.log`` beside wstest's ``wstest.log``."""
    wstest = wstest or find_wstest()
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with SERVERS[name](APP, *SERVER_FLAGS[name], *flags) as server:
        try:
            planned, connect_failure = run_fuzzingclient(wstest, server, name, outdir, cases, exclude, timeout)
            exited = server.proc.poll()
        finally:
            try:
                server.stop()
            finally:
                (outdir / "server.log").write_text(server.text)
    return Result(
        name,
        read_index(outdir, name),
        time.monotonic() - start,
        outdir,
        planned,
        server_output=server.text,
        server_exit=exited,
        connect_failure=connect_failure,
    )


def format_table(results: Iterable[Result]) -> str:
    """One row per server: the count of each behaviour, the total and the time taken."""
    results = list(results)
    seen = {b for r in results for b in r.counts}
    columns = [b for b in BEHAVIOURS if b in seen or b in ("OK", "NON-STRICT", "FAILED")]
    columns += sorted(seen - set(columns))
    header = ["server", *columns, "cases", "seconds"]
    rows = [
        [r.server, *(str(r.counts.get(c, 0)) for c in columns), str(len(r.cases)), f"{r.seconds:.0f}"] for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def format_failures(result: Result) -> str:
    """What went wrong around the run, then the cases that did not pass, one line each."""
    lines = [f"  {result.server}: {problem}" for problem in result.problems]
    lines += [
        f"  {result.server} {case.id}: {case.behavior} (close: {case.behavior_close}) {result_description(case)}"
        for case in result.failures
    ]
    return "\n".join(lines)


def result_description(case: Case) -> str:
    """The report's own words about why a case ended as it did."""
    if case.report is None or not case.report.exists():
        return ""
    data: dict[str, Any] = json.loads(case.report.read_text())
    return f"{data.get('result', '')} / {data.get('resultClose', '')}"


def versions(wstest: Path) -> str:
    """The versions the figures were measured with."""
    names = ("channelserver", "wsproto", "uvicorn", "daphne", "autobahn")
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    tool = subprocess.run(
        [str(wstest), "--autobahnversion"], capture_output=True, text=True, check=False, env=_wstest_env()
    )
    found += [line.strip() for line in tool.stdout.splitlines() if line.startswith("AutobahnTestSuite")]
    return ", ".join(found) + f", Python {sys.version.split()[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Autobahn|Testsuite fuzzing client against WebSocket echo servers.")
    parser.add_argument("--full", action="store_true", help="run every case (1-7, 9, 10, 12, 13), not the quick set")
    parser.add_argument("--cases", nargs="+", help="case patterns to run instead, e.g. 9.* 12.1.*")
    parser.add_argument(
        "--server", action="append", choices=sorted(SERVERS), help="server(s) to run (default: all three)"
    )
    parser.add_argument("--keep", type=Path, help="write the reports into this folder and keep them")
    args = parser.parse_args(argv)

    cases = tuple(args.cases) if args.cases else FULL_CASES if args.full else QUICK_CASES
    names = args.server or list(SERVERS)
    try:
        wstest = find_wstest()
    except WstestMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    base = args.keep or Path(tempfile.mkdtemp(prefix="autobahn-"))
    results = []
    for name in names:
        print(f"{name}: running {' '.join(cases)} ...", file=sys.stderr, flush=True)
        result = run_server(name, base / name, cases, wstest=wstest)
        results.append(result)
        print(f"{name}: {len(result.cases)} cases in {result.seconds:.0f} s", file=sys.stderr, flush=True)
    print(versions(wstest))
    print(format_table(results))
    for result in results:
        if result.problems or result.failures:
            print(f"\n{result.server}: {len(result.failures)} case(s) not passing")
            print(format_failures(result))
    if args.keep:
        print(f"\nreports: {base}/<server>/index.html")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if any(r.failures or r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
