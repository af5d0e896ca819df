"""HTTP/2 requests per second and server CPU per request: channelserver, Hypercorn and
Granian, over h2c (prior knowledge) and over TLS (ALPN h2), driven by ``h2load``
(Debian's nghttp2-client), all in one run, the server order rotated each round.

Each server serves ``bench.apps:app`` (``GET /``: a 13-byte answer) in one process with
its access log off; ``h2load -n N -c C -m M`` makes the requests; the server's CPU
(user + system, its process and children, from psutil) over the run is divided by the
requests it answered. The report gives the median of the rounds and each server's CPU per
request as a ratio to Hypercorn's.

    python bench/h2.py                     # 3 rounds of 20,000 requests, 4 connections x 20 streams
    python bench/h2.py --requests 5000 --rounds 1 --servers channelserver,hypercorn
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVERS = ("channelserver", "hypercorn", "granian")
MODES = ("h2c", "tls")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (h2load does not verify it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def command(server: str, port: int, tls: tuple[Path, Path] | None) -> list[str]:
    app = "bench.apps:app"
    if server == "channelserver":
        cmd = [PYTHON, "-m", "channelserver", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", app]
        if tls:
            cmd += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        return cmd
    if server == "hypercorn":
        cmd = [PYTHON, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", app]
        cmd += ["--config", "python:bench.hypercorn_config"]  # no GOAWAY after 1000 requests
        if tls:
            cmd += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
        return cmd
    granian = shutil.which("granian") or str(Path(PYTHON).parent / "granian")
    cmd = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--http", "2", "--no-ws", app]
    if tls:
        cmd += ["--ssl-certificate", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    return cmd


@contextlib.contextmanager
def running(server: str, tls: tuple[Path, Path] | None) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    proc = subprocess.Popen(command(server, port, tls), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server} did not start ({' '.join(command(server, port, tls))})")
            time.sleep(0.05)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def h2load(url: str, requests: int, clients: int, streams: int) -> tuple[float, int, int]:
    """(requests per second, succeeded, failed) of one h2load run."""
    done = subprocess.run(
        ["h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams), url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    parsed = parse_h2load(done.stdout)
    if parsed is None:
        raise RuntimeError(f"h2load said:\n{done.stdout}\n{done.stderr}")
    return parsed


def parse_h2load(output: str) -> tuple[float, int, int] | None:
    """(requests per second, succeeded, failed) from h2load's report, or None."""
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", output)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", output)
    if rate is None or counts is None:
        return None
    return float(rate[1]), int(counts[1]), int(counts[2])


def one(server: str, mode: str, tls: tuple[Path, Path], requests: int, clients: int, streams: int) -> dict[str, float]:
    with running(server, tls if mode == "tls" else None) as (port, process):
        url = f"{'https' if mode == 'tls' else 'http'}://127.0.0.1:{port}/"
        h2load(url, min(500, requests), clients, streams)  # warm-up
        before = cpu(process)
        rate, ok, failed = h2load(url, requests, clients, streams)
        used = cpu(process) - before
    return {"rps": rate, "ok": ok, "failed": failed, "cpu_us": used / max(ok, 1) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        print("h2load is needed (Debian package nghttp2-client: scripts/system-deps.sh)", file=sys.stderr)
        return 1
    servers = args.servers.split(",")
    modes = args.modes.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        tls = certificate(Path(directory))
        for round_ in range(args.rounds):
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for mode in modes:
                for server in order:
                    try:
                        result = one(server, mode, tls, args.requests, args.clients, args.streams)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"{server} {mode}: {exc}", file=sys.stderr)
                        continue
                    results.setdefault((server, mode), []).append(result)
                    print(
                        f"round {round_ + 1} {mode:4} {server:14} {result['rps']:9.0f} req/s "
                        f"{result['cpu_us']:7.1f} us CPU/request, {result['failed']:.0f} failed",
                        flush=True,
                    )
    print(
        f"\nh2load -n {args.requests} -c {args.clients} -m {args.streams}, median of {args.rounds} "
        f"round(s), {datetime.date.today()}, Python {sys.version.split()[0]}"
    )
    failures = False
    print("| mode | server | req/s | server CPU per request | vs Hypercorn | failed |")
    print("|---|---|---:|---:|---:|---:|")
    for mode in modes:
        base = results.get(("hypercorn", mode))
        base_ok = base and not any(r["failed"] for r in base)
        base_cpu = statistics.median(r["cpu_us"] for r in base) if base_ok else None
        for server in servers:
            runs = results.get((server, mode))
            if not runs:
                print(f"| {mode} | {server} | - | - | - | did not run |")
                continue
            rps = statistics.median(r["rps"] for r in runs)
            cpu_us = statistics.median(r["cpu_us"] for r in runs)
            ratio = f"{cpu_us / base_cpu:.2f}x" if base_cpu else "-"
            failed = sum(r["failed"] for r in runs)
            if failed:  # a CPU figure over some of the requests compares with nothing
                ratio = "- (requests failed)"
                failures = True
            print(f"| {mode} | {server} | {rps:,.0f} | {cpu_us:.1f} us | {ratio} | {failed:.0f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
