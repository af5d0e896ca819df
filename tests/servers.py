"""Real server subprocesses for integration, parity and demo tests.

``ServerProcess`` starts a command, waits for the line that names the bound port (no
sleeps: it waits on the process's output until the line comes or the deadline passes), and
stops the process with a signal, returning its exit code and everything it logged. A
thread reads the output for the process's whole life, so a chatty server never blocks on
a full pipe, whatever the test is doing meanwhile.

Servers started here bind 127.0.0.1 port 0 and report the port they got:

- channelserver: ``Listening on http://127.0.0.1:PORT``
- daphne: ``Listening on TCP address 127.0.0.1:PORT``
- uvicorn: ``Uvicorn running on http://127.0.0.1:PORT``
- runchannelserver: ``Starting ASGI/channelserver ... at http://127.0.0.1:PORT/``
"""

from __future__ import annotations

import os
import re
import signal as _signal
import subprocess
import sys
import threading
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
        self._buffer = bytearray()  # what the process wrote; guarded by _changed
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._pump, name=f"output of pid {self.proc.pid}", daemon=True)
        self._reader.start()
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
    def _pump(self) -> None:
        """The reader thread: everything the process writes, until EOF."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while chunk := os.read(fd, 65536):
                with self._changed:
                    self._buffer += chunk
                    self._changed.notify_all()
        except OSError:
            pass
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()

    @property
    def output(self) -> bytes:
        """Everything the process wrote so far."""
        with self._changed:
            return bytes(self._buffer)

    def _exit_code(self) -> int | None:
        try:
            return self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            return None

    def wait_for(self, patterns: Sequence[re.Pattern[bytes]] | re.Pattern[bytes], timeout: float = 10.0) -> int:
        """Wait until the output matches; return the first group as int (0 if none)."""
        if isinstance(patterns, re.Pattern):
            patterns = [patterns]
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for pattern in patterns:
                    match = pattern.search(self._buffer)
                    if match:
                        return int(match.group(1)) if match.groups() else 0
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {patterns} in server output within {timeout}s:\n{self._text()}")
                if self._eof:
                    break
                self._changed.wait(min(left, 0.5))
        raise RuntimeError(f"server exited with {self._exit_code()}:\n{self.text}")

    def drain_output(self, timeout: float = 0.2) -> str:
        """Let ``timeout`` seconds of output arrive (less if the process closed it)."""
        with self._changed:
            self._changed.wait_for(lambda: self._eof, timeout)
            return self._text()

    def _text(self) -> str:
        return self._buffer.decode("utf-8", "replace")

    @property
    def text(self) -> str:
        with self._changed:
            return self._text()

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
        """Wait for exit and for the end of its output; return the exit code."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"server still running after {timeout}s:\n{self.text}") from None
        self._reader.join(5.0)  # EOF, unless a child of the server still holds the pipe
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
        """Close the pipe from the process once the reader is done with it (what it wrote
        stays in ``output``). While the reader still reads (a child of the server holds
        the pipe open) the pipe is left to it: closing a descriptor another thread reads
        could hand that thread a reused one."""
        if self.proc.poll() is not None:
            self._reader.join(5.0)
        if not self._reader.is_alive() and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
        self.close()


def channelserver(app: str, *flags: str, **kwargs: object) -> ServerProcess:
    return ServerProcess([PYTHON, "-m", "channelserver", "--host", "127.0.0.1", "--port", "0", app, *flags], **kwargs)  # type: ignore[arg-type]


HTTPS_READY = re.compile(rb"Listening on https://127\.0\.0\.1:(\d+)")


def tls_channelserver(app: str, cert: Path, key: Path, *flags: str, **kwargs: object) -> ServerProcess:
    """:func:`channelserver` over TLS with ``cert`` and ``key``; its port read from the
    ``Listening on https://`` line (the process is stopped if it never comes)."""
    server = channelserver(
        app, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), *flags, wait_for_port=False, **kwargs
    )
    try:
        server.port = server.wait_for(HTTPS_READY, 30)
    except BaseException:
        server.stop()
        raise
    return server


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
