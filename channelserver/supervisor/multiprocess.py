"""Worker processes sharing the listening sockets, supervised by one parent process.

The parent binds the sockets once and keeps them open for its whole life, so the kernel
queues new connections even while no worker is accepting: replacing a worker never
refuses a connection. It starts ``config.workers`` processes with multiprocessing's
"spawn" method (a fresh interpreter each, so no thread, event loop or lock of the parent
leaks into a worker) and hands them the sockets as inherited file descriptors. Each
worker imports the app and runs one :class:`~channelserver.server.server.Server` on its
own event loop, with its own SIGINT/SIGTERM handling: a worker stops exactly as a single
server process does.

Parent and worker talk over one duplex pipe per worker, in small tuples:

====================  ==========================================================
worker -> parent      ``("ready",)`` once listening; ``("failed", text)`` when it
                      cannot start; ``("pong", n)``; ``("retire", requests)`` once
                      it served ``max_requests`` (+ its jitter)
parent -> worker      ``("ping", n)``, answered from the worker's event loop, so a
                      worker whose loop is stuck does not answer
====================  ==========================================================

The parent tells a worker to stop with SIGTERM (it then drains) and forwards a second
SIGINT (it then stops waiting). A worker whose parent is gone sees its pipe close and
shuts down.

What the parent does, each rule in one place (:meth:`Supervisor._message`,
:meth:`Supervisor._exited`, :meth:`Supervisor._signal`, :meth:`Supervisor._deadlines`):

- a worker that exits while serving is replaced; one that does not answer a ping within
  ``health_check_timeout`` is killed, then replaced;
- a worker that fails before it is ready (import error, lifespan failure, exit, not ready
  within ``startup_timeout``) stops everything: exit code 3 and the error, no respawn loop;
- ``max_requests``: the worker asks to retire; SIGHUP: every worker started before the
  signal is replaced, one at a time. In both, the replacement is started and *ready*
  before the old worker gets its SIGTERM;
- SIGINT/SIGTERM: every worker gets SIGTERM at once and drains in parallel; one still
  running after ``graceful_timeout + 2 * app_close_timeout + 5 s + stop_margin`` (the
  worker's own bound, see ``Supervisor.stop_timeout``) is killed. Exit 0 when all stopped
  by themselves, 1 if one had to be killed.

Signal handlers only record the signal (and wake the loop through a socket); the loop
waits with :func:`multiprocessing.connection.wait` on the worker pipes, the worker
process sentinels and that socket, with the next deadline as its timeout. Handlers are
restored when :meth:`Supervisor.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import multiprocessing
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from ..config import Config
from ..errors import EXIT_KILLED, EXIT_OK, EXIT_STARTUP_FAILED, StartupError
from ..importer import import_app
from ..server.server import Server, bind_socket, describe_socket, run
from ..server.tasks import CANCEL_GRACE, exit_watchdog

__all__ = ["Supervisor"]

log = logging.getLogger("channelserver.error")


class Phase(enum.Enum):
    """Where one worker is in its life, as the parent sees it."""

    STARTING = "starting"  # spawned, importing the app, lifespan startup
    SERVING = "serving"  # said ready; pinged
    STOPPING = "stopping"  # sent SIGTERM; draining; killed at kill_at


class Mode(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(eq=False)
class Worker:
    """The parent's record of one worker process."""

    process: BaseProcess
    conn: Connection | None
    generation: int
    started_at: float
    phase: Phase = Phase.STARTING
    #: The worker this one takes over from once it is ready (recycling, rolling restart).
    replaces: Worker | None = None
    replaced_by: Worker | None = None
    failed: bool = False
    ping_seq: int = 0
    ping_sent_at: float | None = None
    next_ping_at: float = math.inf
    kill_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid or 0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def cli_logging(config: Config) -> None:
    """Worker logging as ``python -m channelserver`` sets it up: the same lines as the parent's."""
    from ..__main__ import configure_logging

    configure_logging(config.log_level)


class Supervisor:
    """Run ``app_target`` in ``config.workers`` worker processes until SIGINT/SIGTERM.

    ``worker_logging`` is called first thing in each worker to set up its logging (a
    spawned worker starts with none); it is pickled to the worker, so it must be a
    module-level function or a :func:`functools.partial` of one. The other keyword
    arguments are the supervision timings in seconds: how often a serving worker is
    pinged, how long it may take to answer, how long a new worker may take to become
    ready, and the time allowed on top of ``graceful_timeout + app_close_timeout`` before
    a stopping worker is killed.
    """

    def __init__(
        self,
        config: Config,
        app_target: str,
        *,
        worker_logging: Callable[[Config], None] = cli_logging,
        health_check_interval: float = 10.0,
        health_check_timeout: float = 30.0,
        startup_timeout: float = 60.0,
        stop_margin: float = 5.0,
    ) -> None:
        self.config = config
        self.app_target = app_target
        self.worker_logging = worker_logging
        self.health_check_interval = health_check_interval
        self.health_check_timeout = health_check_timeout
        self.startup_timeout = startup_timeout
        # A worker's own shutdown is bounded by graceful_timeout, up to 1 s of WebSocket
        # close handshakes, app_close_timeout for the apps and again for lifespan shutdown,
        # and CANCEL_GRACE four times: after the apps' cancellation, after lifespan's, for
        # the loop's last clean-up and for the exit watchdog (a thread an app left busy).
        self.stop_timeout = config.graceful_timeout + 2 * config.app_close_timeout + 1 + 4 * CANCEL_GRACE + stop_margin
        self.context = multiprocessing.get_context("spawn")
        self.sockets: list[socket.socket] = []
        self.workers: list[Worker] = []
        self.mode = Mode.RUNNING
        self.exit_code = 0
        self.generation = 0
        self.booted = False
        self.rolling_replacement: Worker | None = None
        self.rolling = False
        self.pending_signals: list[int] = []
        self._wakeup: socket.socket | None = None

    # -- running -----------------------------------------------------------------------
    def run(self) -> int:
        """Bind, start the workers, supervise them; return the process exit code."""
        try:
            self.sockets = [bind_socket(self.config)]
        except StartupError as exc:
            log.error("%s", exc)
            return EXIT_STARTUP_FAILED
        try:
            for sock in self.sockets:
                log.info("Listening on %s (pid %d)", describe_socket(sock), os.getpid())
            with self._recording_signals():
                for _ in range(self.config.workers):
                    self._spawn()
                while self.mode is Mode.RUNNING or self.workers:
                    self._step()
            log.info("All workers stopped")
            return self.exit_code
        finally:
            self._kill_all()
            for sock in self.sockets:
                sock.close()

    def _step(self) -> None:
        """Wait for the next event or deadline, then act on it."""
        assert self._wakeup is not None
        deadline = self._next_deadline()
        timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
        waitables: list[Any] = [self._wakeup]
        for worker in self.workers:
            waitables.append(worker.process.sentinel)
            if worker.conn is not None:
                waitables.append(worker.conn)
        ready = wait(waitables, timeout)
        if self._wakeup in ready:
            with contextlib.suppress(BlockingIOError):
                while self._wakeup.recv(512):
                    pass
        while self.pending_signals:
            self._signal(self.pending_signals.pop(0))
        for worker in list(self.workers):
            if worker.conn is not None and worker.conn in ready:
                self._read(worker)
        for worker in [w for w in self.workers if w.process.sentinel in ready]:
            self._exited(worker)
        self._deadlines(time.monotonic())

    @contextlib.contextmanager
    def _recording_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM/SIGHUP handlers that only record; a socket wakes the loop."""
        self._wakeup, wakeup_write = socket.socketpair()
        self._wakeup.setblocking(False)
        wakeup_write.setblocking(False)
        old_fd = signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
        old_handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                old_handlers[sig] = signal.signal(sig, self._record_signal)
            yield
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)
            wakeup_write.close()
            self._wakeup.close()

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending_signals.append(signum)

    # -- starting and stopping workers --------------------------------------------------
    def _spawn(self, replaces: Worker | None = None) -> Worker:
        parent_end, child_end = self.context.Pipe(duplex=True)
        limit = None
        if self.config.max_requests:
            limit = self.config.max_requests + random.randint(0, max(0, self.config.max_requests_jitter))
        spec = WorkerSpec(self.config, self.app_target, limit, self.worker_logging)
        process = self.context.Process(
            target=worker_main, args=(spec, child_end, self.sockets), name="channelserver-worker"
        )
        process.start()
        child_end.close()
        worker = Worker(process, parent_end, self.generation, time.monotonic(), replaces=replaces)
        if replaces is not None:
            replaces.replaced_by = worker
            log.info("Worker pid %d starting, to replace pid %d", worker.pid, replaces.pid)
        else:
            log.info("Worker pid %d starting", worker.pid)
        self.workers.append(worker)
        return worker

    def _stop(self, worker: Worker) -> None:
        """SIGTERM: the worker stops accepting and drains; killed if it overruns."""
        worker.phase = Phase.STOPPING
        worker.ping_sent_at = None
        worker.kill_at = time.monotonic() + self.stop_timeout
        self._kill(worker, signal.SIGTERM)

    def _kill(self, worker: Worker, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if worker.process.is_alive():
                os.kill(worker.pid, sig)

    def _begin_stop(self, why: str) -> None:
        self.mode = Mode.STOPPING
        self.rolling = False
        live = [w for w in self.workers if w.phase is not Phase.STOPPING]
        log.info("%s: stopping %d worker(s), up to %.0fs", why, len(self.workers), self.stop_timeout)
        for worker in live:
            self._stop(worker)

    def _kill_all(self) -> None:
        """Last resort when :meth:`run` leaves with workers alive (an error in the parent)."""
        for worker in self.workers:
            self._kill(worker, signal.SIGKILL)
            worker.process.join(5)
            if worker.conn is not None:
                worker.conn.close()
        self.workers.clear()

    # -- what happened -------------------------------------------------------------------
    def _signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if sig in (signal.SIGINT, signal.SIGTERM):
            if self.mode is Mode.RUNNING:
                self._begin_stop(f"Received {name}")
            elif sig == signal.SIGINT:
                log.warning("Received SIGINT again: telling the workers to stop waiting")
                for worker in self.workers:
                    self._kill(worker, signal.SIGINT)
        elif sig == signal.SIGHUP and self.mode is Mode.RUNNING:
            self.generation += 1
            self.rolling = True
            log.info("Received SIGHUP: replacing %d worker(s) one by one", len(self._outdated()))
            self._continue_rolling()

    def _read(self, worker: Worker) -> None:
        assert worker.conn is not None
        try:
            while worker.conn.poll():
                self._message(worker, worker.conn.recv())
        except (EOFError, OSError):
            worker.conn.close()
            worker.conn = None

    def _message(self, worker: Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "pong":
            if message[1] == worker.ping_seq and worker.phase is Phase.SERVING:
                worker.ping_sent_at = None
                worker.next_ping_at = time.monotonic() + self.health_check_interval
        elif kind == "ready":
            if worker.phase is not Phase.STARTING:
                return
            worker.phase = Phase.SERVING
            worker.next_ping_at = time.monotonic() + self.health_check_interval
            log.info("Worker pid %d ready", worker.pid)
            old = worker.replaces
            worker.replaces = None
            if old is not None:
                old.replaced_by = None
                if old.phase is Phase.SERVING:
                    log.info("Worker pid %d replaced by pid %d; draining it", old.pid, worker.pid)
                    self._stop(old)
            if self.rolling_replacement is worker:
                self.rolling_replacement = None
            if not self.booted and sum(w.phase is Phase.SERVING for w in self.workers) >= self.config.workers:
                self.booted = True
                log.info("All %d worker(s) ready", self.config.workers)
            self._continue_rolling()
        elif kind == "failed":
            self._startup_failed(worker, str(message[1]))
        elif kind == "retire":
            if self.mode is Mode.RUNNING and worker.phase is Phase.SERVING and worker.replaced_by is None:
                log.info("Worker pid %d served %d requests (max_requests); replacing it", worker.pid, message[1])
                self._spawn(replaces=worker)

    def _startup_failed(self, worker: Worker, text: str) -> None:
        worker.failed = True
        log.error("Worker pid %d failed to start: %s", worker.pid, text)
        if self.mode is Mode.RUNNING:
            self.exit_code = EXIT_STARTUP_FAILED
            self._begin_stop("A worker failed to start")
        elif worker.phase is not Phase.STOPPING:
            self._stop(worker)

    def _exited(self, worker: Worker) -> None:
        if worker.conn is not None:
            self._read(worker)  # a last message, "failed" say, comes before the exit
        worker.process.join()
        self.workers.remove(worker)
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        how = describe_exit(worker.process.exitcode)
        if worker.phase is Phase.STOPPING:
            log.info("Worker pid %d exited (%s)", worker.pid, how)
        elif worker.phase is Phase.STARTING:
            if not worker.failed:
                self._startup_failed(worker, f"it exited ({how}) before it was ready")
        elif self.mode is Mode.RUNNING:
            heir = worker.replaced_by
            if heir is not None:
                heir.replaces = None  # already on its way: it takes the free place
                log.warning("Worker pid %d died (%s); pid %d is taking its place", worker.pid, how, heir.pid)
            else:
                log.warning("Worker pid %d died (%s); starting a replacement", worker.pid, how)
                self._spawn()
        if self.rolling_replacement is worker:
            self.rolling_replacement = None
        self._continue_rolling()

    def _outdated(self) -> list[Worker]:
        return [
            w
            for w in self.workers
            if w.phase is Phase.SERVING and w.generation < self.generation and w.replaced_by is None
        ]

    def _continue_rolling(self) -> None:
        """Rolling restart: one replacement at a time, each ready before the next starts."""
        if not self.rolling or self.mode is not Mode.RUNNING or self.rolling_replacement is not None:
            return
        outdated = self._outdated()
        if outdated:
            self.rolling_replacement = self._spawn(replaces=outdated[0])
        elif not any(w.generation < self.generation and w.phase is not Phase.STOPPING for w in self.workers):
            self.rolling = False
            log.info("Rolling restart complete")

    # -- time ------------------------------------------------------------------------------
    def _deadlines_of(self, worker: Worker) -> float:
        if worker.phase is Phase.STARTING:
            return worker.started_at + self.startup_timeout
        if worker.phase is Phase.SERVING:
            if worker.ping_sent_at is not None:
                return worker.ping_sent_at + self.health_check_timeout
            return worker.next_ping_at
        return worker.kill_at if worker.kill_at is not None else math.inf

    def _next_deadline(self) -> float:
        return min((self._deadlines_of(w) for w in self.workers), default=math.inf)

    def _deadlines(self, now: float) -> None:
        for worker in list(self.workers):
            if self._deadlines_of(worker) > now:
                continue
            if worker.phase is Phase.STARTING:
                self._kill(worker, signal.SIGKILL)
                self._startup_failed(worker, f"not ready within startup_timeout ({self.startup_timeout:g}s)")
            elif worker.phase is Phase.SERVING and worker.ping_sent_at is None:
                self._ping(worker, now)
            elif worker.phase is Phase.SERVING:
                log.warning(
                    "Worker pid %d did not answer a health check within %gs; killing it",
                    worker.pid,
                    self.health_check_timeout,
                )
                worker.ping_sent_at = None
                worker.next_ping_at = math.inf
                self._kill(worker, signal.SIGKILL)
            else:
                log.error("Worker pid %d did not exit within %gs; killing it", worker.pid, self.stop_timeout)
                worker.kill_at = None
                self._kill(worker, signal.SIGKILL)
                if self.mode is Mode.STOPPING and self.exit_code == 0:
                    self.exit_code = EXIT_KILLED

    def _ping(self, worker: Worker, now: float) -> None:
        worker.ping_seq += 1
        worker.ping_sent_at = now
        if worker.conn is None:
            return  # its pipe is closed: it is exiting, or it will miss the deadline
        with contextlib.suppress(OSError):
            worker.conn.send(("ping", worker.ping_seq))


# -- inside a worker process -----------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to know; pickled to the spawned process."""

    config: Config
    app_target: str
    #: Ask to be replaced after this many requests and connections (None: never).
    max_requests: int | None
    logging: Callable[[Config], None]


def worker_main(spec: WorkerSpec, conn: Connection, sockets: list[socket.socket]) -> None:
    """Entry point of a worker process: import the app, serve, exit with the right code.

    SIGINT is ignored until the server's own handlers are in place: a Ctrl-C in a terminal
    reaches every process of the group, and the parent forwards what matters. SIGHUP is the
    parent's (rolling restart) and is ignored here, so one sent to the whole process group
    does not kill the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    spec.logging(spec.config)
    try:
        app = import_app(spec.app_target)
    except StartupError as exc:
        _report(conn, ("failed", str(exc)))
        raise SystemExit(EXIT_STARTUP_FAILED) from None
    except Exception as exc:
        _report(conn, ("failed", f"Could not import {spec.app_target!r}: {type(exc).__name__}: {exc}"))
        raise SystemExit(EXIT_STARTUP_FAILED) from None
    code = WorkerRuntime(spec, conn, app).run(sockets)
    exit_watchdog(code)
    raise SystemExit(code)


def _report(conn: Connection, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):
        conn.send(message)


@dataclass(eq=False)
class WorkerRuntime:
    """One worker's server, plus its side of the pipe to the parent."""

    spec: WorkerSpec
    conn: Connection
    app: Any
    server: Server | None = None
    retiring: bool = False
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def run(self, sockets: list[socket.socket]) -> int:
        """Serve until told to stop; tell the parent when ready, or why it could not start."""
        try:
            run(self.spec.config, self.app, sockets, on_ready=self._ready, on_request=self._request_counted)
        except Exception as exc:
            if self.server is not None and self.server.started.is_set():
                raise
            text = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
            _report(self.conn, ("failed", text))
            return EXIT_STARTUP_FAILED
        else:
            if self.server is None:
                _report(self.conn, ("failed", "the server stopped before it was listening"))
                return EXIT_STARTUP_FAILED
            return EXIT_OK
        finally:
            self.conn.close()

    def _ready(self, server: Server) -> None:
        """Every socket listens: answer the parent's pings from now on, and say so."""
        self.server = server
        self.loop = loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._parent_spoke)
        _report(self.conn, ("ready",))
        self._request_counted()

    def _request_counted(self) -> None:
        """ServerState.on_request: ask to retire once max_requests is reached."""
        limit = self.spec.max_requests
        state = self.server.state if self.server is not None else None
        if limit is None or self.retiring or state is None or state.total_requests < limit:
            return
        self.retiring = True
        _report(self.conn, ("retire", state.total_requests))

    def _parent_spoke(self) -> None:
        """Answer pings; a closed pipe means the parent is gone, so shut down."""
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message[0] == "ping":
                    self.conn.send(("pong", message[1]))
        except (EOFError, OSError):
            assert self.loop is not None and self.server is not None
            self.loop.remove_reader(self.conn.fileno())
            log.warning("The supervising process is gone; shutting down")
            self.server.handle_exit(signal.SIGTERM)
