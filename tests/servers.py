"""Real server subprocesses for integration, parity and demo tests.

``ServerProcess`` starts a command, waits for the line that names the bound port (no
sleeps: it reads the process's output until the line comes or the deadline passes), and
stops the process with a signal, returning its exit code and everything it logged.

Servers started here bind 127.0.0.1 port 0 and report the port they got:

- channelserver: ``Listening on http://127.0.0.1:PORT``
- daphne: ``Listening on TCP address 127.0.0.1:PORT``
- uvicorn: ``Uvicorn running on http://127.0.0.1:PORT``
- runchannelserver: ``Starting ASGI/channelserver ... at http://127.0.0.1:PORT/``
"""

from __future__ import annotations

import os
import re
import selectors
import signal as _signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

PORT_PATTERNS = [
    re.compile(rb"Listening on http://127\.0\.0\.1:(\d+)"),
    re.compile(rb"Listening on TCP address 127\.0\.0\.1:(\d+)"),
    re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)"),
    re.compile(rb"at http://127\.0\.0\.1:(\d+)/"),
]


class ServerProcess:
    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | str = ROOT,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        wait_for_port: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.args = list(args)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), str(ROOT / "tests" / "apps"), full_env.get("PYTHONPATH", "")) if p
        )
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
        )
        self.output = bytearray()
        self.port: int | None = None
        self.returncode: int | None = None
        if wait_for_port:
            try:
                self.port = self.wait_for(PORT_PATTERNS, ready_timeout)
            except BaseException:
                # no caller will hold this object: do not leave the process or its pipe behind
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.close()
                raise

    # -- output ------------------------------------------------------------------------
    def _read_some(self, timeout: float) -> bool:
        """Read what the process wrote within ``timeout``. False at EOF."""
        assert self.proc.stdout is not None
        if self.proc.stdout.closed:
            return False
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            if not sel.select(timeout):
                return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self.output += chunk
        return True

    def wait_for(self, patterns: Sequence[re.Pattern[bytes]] | re.Pattern[bytes], timeout: float = 10.0) -> int:
        """Wait until the output matches; return the first group as int (0 if none)."""
        if isinstance(patterns, re.Pattern):
            patterns = [patterns]
        deadline = time.monotonic() + timeout
        while True:
            for pattern in patterns:
                match = pattern.search(self.output)
                if match:
                    return int(match.group(1)) if match.groups() else 0
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_some(min(left, 0.5)):
                if left > 0 and self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.text}")
                if left <= 0:
                    raise TimeoutError(f"no {patterns} in server output within {timeout}s:\n{self.text}")

    def drain_output(self, timeout: float = 0.2) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self._read_some(max(0.0, end - time.monotonic())):
            pass
        return self.text

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- stopping ----------------------------------------------------------------------
    def signal(self, sig: int = _signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for exit, reading output meanwhile; return the exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server still running after {timeout}s:\n{self.text}")
            self._read_some(0.1)
        while self._read_some(0.05):
            pass
        self.returncode = self.proc.returncode
        return self.returncode

    def stop(self, sig: int = _signal.SIGTERM, timeout: float = 15.0) -> int:
        self.signal(sig)
        try:
            return self.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.close()

    def close(self) -> None:
        """Close the pipe from the process (what it wrote stays in ``output``)."""
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
        self.close()


def channelserver(app: str, *flags: str, **kwargs: object) -> ServerProcess:
    return ServerProcess([PYTHON, "-m", "channelserver", "--host", "127.0.0.1", "--port", "0", app, *flags], **kwargs)  # type: ignore[arg-type]


def daphne(app: str, *flags: str, **kwargs: object) -> ServerProcess:
    return ServerProcess([PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "0", *flags, app], **kwargs)  # type: ignore[arg-type]


def uvicorn(app: str, *flags: str, **kwargs: object) -> ServerProcess:
    return ServerProcess(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--http",
            "h11",
            "--ws",
            "wsproto",
            *flags,
            app,
        ],
        **kwargs,  # type: ignore[arg-type]
    )
