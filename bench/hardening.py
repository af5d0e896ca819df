"""Slow clients: a normal client's latency while hundreds of connections trickle their
request heads (slowloris) or hold WebSocket handshakes half-open.

``python -m bench.hardening`` starts ``python -m channelserver`` with a short
``--keep-alive-timeout`` (which also bounds the time a client has to send a complete
request head), then runs each scenario in turn:

- ``baseline``: no attackers, for comparison;
- ``slowloris``: N connections (default 500) send the start of a request head and then one
  more byte every ``--trickle`` seconds, never finishing it;
- ``half-open-ws``: the same with the start of a WebSocket upgrade request.

Meanwhile a normal client makes ``GET /ok`` requests one after another, each on a fresh
connection, and times each. A scenario ends when the server has closed every attacker (or
``--deadline`` passes). Printed per scenario: the normal client's requests, failures and
p50/p99/max latency, and how long after connecting the server closed the attackers.

``tests/integration/test_hardening.py`` runs the same attacks (importing :func:`attack`
and :class:`NormalClient` from here) and asserts that every attacker is closed and every
normal request succeeded; latency is a figure of this machine's load, so it is only
reported here, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "HALF_OPEN_WS_HEAD",
    "SLOWLORIS_HEAD",
    "AttackResult",
    "NormalClient",
    "attack",
    "percentile",
    "server_env",
]

#: The start of a request head: no blank line ever follows.
SLOWLORIS_HEAD = b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
#: The start of a WebSocket upgrade request, held open the same way.
HALF_OPEN_WS_HEAD = (
    b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)
APP = "hardening_apps:app"


def server_env() -> dict[str, str]:
    """The child's PYTHONPATH: the repository, ``tests/apps`` (recorder) and
    ``tests/integration`` (hardening_apps)."""
    paths = [ROOT, ROOT / "tests" / "apps", ROOT / "tests" / "integration"]
    extra = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join([*(str(p) for p in paths), *([extra] if extra else [])])}


def _trickle_bytes() -> Iterator[bytes]:
    """An endless run of header lines, one byte at a time: ``X-Slow-1: 1\\r\\n`` ..."""
    for n in itertools.count(1):
        for byte in b"X-Slow-%d: 1\r\n" % n:
            yield bytes([byte])


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- the normal client ----------------------------------------------------------------------
def one_request(port: int, path: str = "/ok", timeout: float = 5.0) -> None:
    """One ``GET`` on a fresh connection; raises unless the answer is ``200 ok``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or body != b"ok":
        raise AssertionError(f"unexpected answer: {bytes(data[:200])!r}")


class NormalClient(threading.Thread):
    """Requests one after another until stopped; keeps each latency and each failure."""

    def __init__(self, port: int, path: str = "/ok") -> None:
        super().__init__(name="normal-client", daemon=True)
        self.port = port
        self.path = path
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            start = time.perf_counter()
            try:
                one_request(self.port, self.path)
            except Exception as exc:  # every failure is the finding
                self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                self.latencies.append(time.perf_counter() - start)

    def __enter__(self) -> NormalClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(10)

    def summary(self) -> dict[str, Any]:
        ms = [value * 1000 for value in self.latencies]
        return {
            "requests": len(ms),
            "failures": len(self.failures),
            "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else float("nan"),
        }


# -- the attackers -------------------------------------------------------------------------
@dataclass
class AttackResult:
    """What became of the attacking connections."""

    attackers: int
    #: Seconds from each attacker's connect to the server closing it, for those it closed.
    lifetimes: list[float] = field(default_factory=list)
    #: Attackers the server had not closed when the deadline passed.
    still_open: int = 0
    #: Bytes the server wrote to attackers before closing them (a 408, say), per attacker.
    answers: list[bytes] = field(default_factory=list)
    #: Bytes trickled in all, and how long the attack took.
    trickled: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "attackers": self.attackers,
            "closed": len(self.lifetimes),
            "still_open": self.still_open,
            "closed_after_min_s": round(min(self.lifetimes), 2) if self.lifetimes else None,
            "closed_after_max_s": round(max(self.lifetimes), 2) if self.lifetimes else None,
        }


def attack(port: int, head: bytes, count: int, *, trickle: float = 0.25, deadline: float = 15.0) -> AttackResult:
    """Open ``count`` connections that each send ``head``, then one more byte every
    ``trickle`` seconds; return once the server closed them all or ``deadline`` passed.

    One selector waits both for the server closing a connection (readable, EOF or reset)
    and for the next trickle round, so nothing sleeps while a close could be seen."""
    result = AttackResult(count)
    started = time.monotonic()
    opened: dict[socket.socket, tuple[float, Iterator[bytes], bytearray]] = {}
    sel = selectors.DefaultSelector()

    def closed(sock: socket.socket) -> None:
        opened_at, _, answer = opened.pop(sock)
        result.lifetimes.append(time.monotonic() - opened_at)
        if answer:
            result.answers.append(bytes(answer))
        sel.unregister(sock)
        sock.close()

    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head)
            sock.setblocking(False)
            opened[sock] = (time.monotonic(), _trickle_bytes(), bytearray())
            sel.register(sock, selectors.EVENT_READ)
        next_round = time.monotonic() + trickle
        end = started + deadline
        while opened and time.monotonic() < end:
            for key, _ in sel.select(max(0.0, min(next_round, end) - time.monotonic())):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    opened[sock][2].extend(data)
                else:
                    closed(sock)
            if time.monotonic() >= next_round:
                next_round = time.monotonic() + trickle
                for sock, (_, source, _) in list(opened.items()):
                    try:
                        sock.send(next(source))
                        result.trickled += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed(sock)
        result.still_open = len(opened)
    finally:
        for sock in opened:
            sock.close()
        sel.close()
    result.seconds = time.monotonic() - started
    return result


# -- the command ------------------------------------------------------------------------------
SCENARIOS = {"baseline": None, "slowloris": SLOWLORIS_HEAD, "half-open-ws": HALF_OPEN_WS_HEAD}


def run_scenario(
    port: int, head: bytes | None, count: int, trickle: float, deadline: float, baseline: float
) -> dict[str, Any]:
    with NormalClient(port) as normal:
        if head is None:
            normal.stopping.wait(baseline)
            result: dict[str, Any] = {}
        else:
            result = attack(port, head, count, trickle=trickle, deadline=deadline).summary()
    return {**result, "normal_client": normal.summary()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hardening", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500, help="attacking connections per scenario")
    parser.add_argument("--keep-alive-timeout", type=float, default=2.0, help="the server's head-read bound [s]")
    parser.add_argument("--trickle", type=float, default=0.25, help="seconds between two bytes of one attacker")
    parser.add_argument("--deadline", type=float, default=30.0, help="give up on a scenario after this long [s]")
    parser.add_argument("--baseline-seconds", type=float, default=3.0, help="length of the no-attack run [s]")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="run only these (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from tests.servers import channelserver

    flags = ["--no-access-log", "--keep-alive-timeout", str(args.keep_alive_timeout)]
    figures: dict[str, Any] = {"keep_alive_timeout_s": args.keep_alive_timeout, "scenarios": {}}
    with channelserver(APP, *flags, env=server_env()) as server:
        assert server.port is not None
        for name in args.scenario or list(SCENARIOS):
            figures["scenarios"][name] = run_scenario(
                server.port, SCENARIOS[name], args.connections, args.trickle, args.deadline, args.baseline_seconds
            )
        server.stop()
        tracebacks = server.text.count("Traceback")
    figures["server_tracebacks"] = tracebacks
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"channelserver, --keep-alive-timeout {args.keep_alive_timeout}s, {args.connections} attackers per scenario")
    print(
        f"{'scenario':<14}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}   attackers closed after"
    )
    for name, row in figures["scenarios"].items():
        normal = row["normal_client"]
        closed = (
            f"{row['closed']}/{row['attackers']} in {row['closed_after_min_s']}-{row['closed_after_max_s']} s"
            if "attackers" in row
            else "-"
        )
        print(
            f"{name:<14}{normal['requests']:>9}{normal['failures']:>8}{normal['p50_ms']:>9}"
            f"{normal['p99_ms']:>9}{normal['max_ms']:>9}   {closed}"
        )
    print(f"tracebacks in the server log: {tracebacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
