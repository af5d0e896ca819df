"""Worker processes sharing the listening sockets, supervised by one parent process.

The parent binds the sockets once and keeps them open for its whole life, so the kernel
queues new connections even while no worker is accepting: replacing a worker never
refuses a connection. It starts ``config.workers`` worker processes and hands them the
sockets (see :mod:`channelserver.supervisor.worker`: how a worker is started, what runs in
it, and the messages on its pipe). It tells a worker to stop with SIGTERM (it then drains)
and forwards a second SIGINT (it then stops waiting).

What the parent does, each rule in one place (:meth:`Supervisor._message`,
:meth:`Supervisor.exited`, :meth:`Supervisor.signalled`, :meth:`Supervisor.time_passed`):

- a worker that exits while serving is replaced; one that does not answer a ping within
  ``health_check_timeout`` is killed, then replaced;
- a worker that fails before it is ready (import error, lifespan failure, exit, not ready
  within ``startup_timeout``) stops everything: exit code 3 and the error, no respawn loop;
- recycling: a worker is replaced when it asks to retire (it served ``max_requests``
  requests and WebSocket connections, + its jitter), when its resident memory passes
  ``max_worker_memory`` (read every ``memory_check_interval`` through the launcher), or
  when it is ``max_worker_age`` (+ its jitter) old; SIGHUP: every worker started before
  the signal is replaced. All go through one queue, one worker at a time: the
  replacement is started and *ready* before the old worker gets its SIGTERM, and the
  next replacement starts only then;
- SIGINT/SIGTERM: every worker gets SIGTERM at once and drains in parallel; one still
  running after ``graceful_timeout + 2 * app_close_timeout + 5 s + stop_margin`` (the
  worker's own bound, see ``Supervisor.stop_timeout``) is killed. Exit 0 when all stopped
  by themselves, 1 if one had to be killed.

Those rules read the time from the supervisor's ``clock`` and start, signal and measure
processes through its ``launcher``; they are driven by four inputs (a pipe is readable, a
process exited, a signal arrived, time passed), so tests feed those with a fake clock and
fake processes. :meth:`Supervisor.run` feeds the real ones: signal handlers only record the
signal (and wake the loop through a socket); the loop waits with
:func:`multiprocessing.connection.wait` on the worker pipes, the worker process sentinels
and that socket, with the next deadline as its timeout. Handlers are restored when
:meth:`Supervisor.run` returns.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

from ..config import Config
from ..errors import EXIT_KILLED, EXIT_STARTUP_FAILED, StartupError
from ..monitor.snapshot import Gathered
from ..server.server import bind_socket, describe_socket
from ..server.tasks import CANCEL_GRACE
from .worker import Launcher, SpawnLauncher, WorkerPipe, WorkerProcess, WorkerSpec

__all__ = ["Supervisor"]

log = logging.getLogger("channelserver.error")

MiB = 1024 * 1024


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

    process: WorkerProcess
    conn: WorkerPipe | None
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
    #: When it is ``max_worker_age`` (+ its jitter) old (``math.inf``: never).
    retire_at: float = math.inf
    #: Why it is to be recycled, once it is; it waits its turn in the recycling queue.
    retire_reason: str | None = None
    #: Its memory passed ``max_worker_memory`` as soon as it was ready: replacing it for its
    #: memory would only start another one just as large, so it is not.
    over_memory_when_ready: bool = False
    #: Its place among the workers: the ``worker`` label of its metrics.
    slot: int = 0
    #: The setting that retires it (max_requests, ...), the metrics' restart reason.
    retire_setting: str | None = None
    #: Killed for not answering a health check.
    unresponsive: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@dataclass(eq=False)
class _Ask:
    """A report of app instances asked for by the metrics listener's thread."""

    waiting: set[Worker]
    texts: list[str]
    done: threading.Event


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Run ``app_target`` in ``config.workers`` worker processes until SIGINT/SIGTERM.

    ``worker_logging`` is called first thing in each worker, with ``config.log_level``, to
    set up its logging (a spawned worker starts with none): ``python -m channelserver``
    hands :func:`channelserver.server.log.configure_logging`, ``runchannelserver`` its
    console set-up. It is pickled to the worker, so it must be a module-level function or
    a :func:`functools.partial` of one. The timing arguments are in seconds: how often a
    serving worker is pinged, how long it may take to answer, how long a new worker may
    take to become ready, the time allowed on top of ``graceful_timeout +
    app_close_timeout`` before a stopping worker is killed, and how often the serving
    workers' memory is read when ``max_worker_memory`` is set. ``clock`` and ``launcher``
    (default: :func:`time.monotonic` and spawned processes) are what tests replace.
    """

    def __init__(
        self,
        config: Config,
        app_target: str,
        *,
        worker_logging: Callable[[str], None],
        health_check_interval: float = 10.0,
        health_check_timeout: float = 30.0,
        startup_timeout: float = 60.0,
        stop_margin: float = 5.0,
        memory_check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        launcher: Launcher | None = None,
    ) -> None:
        self.config = config
        self.app_target = app_target
        self.worker_logging = worker_logging
        self.health_check_interval = health_check_interval
        self.health_check_timeout = health_check_timeout
        self.startup_timeout = startup_timeout
        self.memory_check_interval = memory_check_interval
        # A worker's own shutdown is bounded by graceful_timeout, up to 1 s of WebSocket
        # close handshakes, app_close_timeout for the apps and again for lifespan shutdown,
        # and CANCEL_GRACE four times: after the apps' cancellation, after lifespan's, for
        # the loop's last clean-up and for the exit watchdog (a thread an app left busy).
        # The drain's own phases come first: drain_delay serving, then drain_spread closing.
        self.stop_timeout = (
            config.drain_delay
            + config.drain_spread
            + config.graceful_timeout
            + 2 * config.app_close_timeout
            + 1
            + 4 * CANCEL_GRACE
            + stop_margin
        )
        self.clock = clock
        self.launcher: Launcher = launcher if launcher is not None else SpawnLauncher()
        self.sockets: list[socket.socket] = []
        self.workers: list[Worker] = []
        self.mode = Mode.RUNNING
        self.exit_code = 0
        self.generation = 0
        self.booted = False
        #: The one replacement starting at a time (recycling, rolling restart), if any.
        self.replacing: Worker | None = None
        self.rolling = False
        #: ``max_worker_memory`` in bytes, when the launcher can read a worker's memory.
        self.memory_limit: int | None = None
        self.next_memory_check = math.inf
        self.pending_signals: list[int] = []
        self._wakeup: socket.socket | None = None
        #: ``--metrics``: every worker's numbers, and the listener that serves them.
        self.gathered = Gathered() if config.metrics is not None else None
        self.listener: Any = None
        #: Reports of app instances asked for by the listener's thread, and those waiting
        #: for the workers' answers, by the number they were sent with.
        self._asks_in: queue.SimpleQueue[_Ask] = queue.SimpleQueue()
        self._asks: dict[int, _Ask] = {}
        self._ask_seq = 0
        self._wakeup_write: socket.socket | None = None
        #: When stopping, the parent closes its copy of the listening sockets once the
        #: workers stop accepting (after drain_delay): from then on the kernel refuses new
        #: connections at once, instead of queueing them for no one to accept.
        self.close_sockets_at = math.inf

    @property
    def done(self) -> bool:
        """Stopping, and every worker has exited: :meth:`run` returns ``exit_code``."""
        return self.mode is Mode.STOPPING and not self.workers

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
            if self.config.metrics is not None:
                from ..monitor.listener import MetricsListener

                assert self.gathered is not None
                try:
                    self.listener = MetricsListener(self.config.metrics, self.gathered.view, self.instances_report)
                except StartupError as exc:
                    log.error("%s", exc)
                    return EXIT_STARTUP_FAILED
                self.listener.start()
            with self._recording_signals():
                self.start_workers()
                while not self.done:
                    self._step()
            log.info("All workers stopped")
            return self.exit_code
        finally:
            self._kill_all()
            for sock in self.sockets:
                sock.close()
            if self.listener is not None:
                self.listener.close()

    def _step(self) -> None:
        """Wait for the next event or deadline, then act on it."""
        assert self._wakeup is not None
        deadline = self.next_deadline()
        timeout = None if deadline == math.inf else max(0.0, deadline - self.clock())
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
            self.signalled(self.pending_signals.pop(0))
        while not self._asks_in.empty():
            self._ask_workers(self._asks_in.get())
        for worker in list(self.workers):
            if worker.conn is not None and worker.conn in ready:
                self.readable(worker)
        for worker in [w for w in self.workers if w.process.sentinel in ready]:
            self.exited(worker)
        self.time_passed()
        if self.gathered is not None:
            self.gathered.workers = sum(w.phase is Phase.SERVING for w in self.workers)

    @contextlib.contextmanager
    def _recording_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM/SIGHUP handlers that only record; a socket wakes the loop."""
        self._wakeup, wakeup_write = socket.socketpair()
        self._wakeup_write = wakeup_write
        self._wakeup.setblocking(False)
        wakeup_write.setblocking(False)
        old_fd = signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
        old_handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                old_handlers[sig] = signal.signal(sig, self._record_signal)
            yield
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)
            self._wakeup_write = None
            wakeup_write.close()
            self._wakeup.close()

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending_signals.append(signum)

    # -- starting and stopping workers --------------------------------------------------
    def start_workers(self) -> None:
        """The first ``config.workers`` workers."""
        self._check_recycling_settings()
        for slot in range(self.config.workers):
            self._spawn(slot=slot)

    def _check_recycling_settings(self) -> None:
        """Turn the memory check on; say once for each recycling setting that cannot apply."""
        config = self.config
        if config.max_worker_memory:
            if self.launcher.measures_memory:
                self.memory_limit = config.max_worker_memory * MiB
                self.next_memory_check = self.clock() + self.memory_check_interval
            else:
                log.warning(
                    "max_worker_memory (%d MiB) is ignored: "
                    "a worker's memory cannot be read on this platform (no /proc)",
                    config.max_worker_memory,
                )
        if config.max_requests_jitter and not config.max_requests:
            log.warning(
                "max_requests_jitter (%d) is ignored: it applies only with max_requests", config.max_requests_jitter
            )
        if config.max_worker_age_jitter and not config.max_worker_age:
            log.warning(
                "max_worker_age_jitter (%gs) is ignored: it applies only with max_worker_age",
                config.max_worker_age_jitter,
            )

    def _spawn(self, replaces: Worker | None = None, slot: int = 0) -> Worker:
        limit = None
        if self.config.max_requests:
            limit = self.config.max_requests + random.randint(0, max(0, self.config.max_requests_jitter))
        if replaces is not None:
            slot = replaces.slot
        spec = WorkerSpec(self.config, self.app_target, limit, self.worker_logging, slot)
        process, conn = self.launcher.start(spec, self.sockets)
        worker = Worker(process, conn, self.generation, self.clock(), replaces=replaces, slot=slot)
        if self.config.max_worker_age:
            extra = random.uniform(0, self.config.max_worker_age_jitter)
            worker.retire_at = worker.started_at + self.config.max_worker_age + extra
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
        worker.kill_at = self.clock() + self.stop_timeout
        self._kill(worker, signal.SIGTERM)

    def _kill(self, worker: Worker, sig: int) -> None:
        self.launcher.signal(worker.process, sig)

    def _begin_stop(self, why: str) -> None:
        self.mode = Mode.STOPPING
        self.rolling = False
        self.next_memory_check = math.inf
        live = [w for w in self.workers if w.phase is not Phase.STOPPING]
        log.info("%s: stopping %d worker(s), up to %.0fs", why, len(self.workers), self.stop_timeout)
        for worker in live:
            self._stop(worker)
        self.close_sockets_at = self.clock() + self.config.drain_delay
        self._close_sockets_when_due()

    def _close_sockets_when_due(self) -> None:
        if self.close_sockets_at > self.clock():
            return
        self.close_sockets_at = math.inf
        for sock in self.sockets:
            sock.close()

    def _kill_all(self) -> None:
        """Last resort when :meth:`run` leaves with workers alive (an error in the parent)."""
        for worker in self.workers:
            self._kill(worker, signal.SIGKILL)
            worker.process.join(5)
            if worker.conn is not None:
                worker.conn.close()
        self.workers.clear()

    # -- what happened -------------------------------------------------------------------
    def signalled(self, sig: int) -> None:
        """Input: the parent received ``sig`` (SIGINT, SIGTERM or SIGHUP)."""
        name = signal.Signals(sig).name
        if sig in (signal.SIGINT, signal.SIGTERM):
            if self.mode is Mode.RUNNING:
                self._begin_stop(f"Received {name}")
            elif sig == signal.SIGINT:
                log.warning("Received SIGINT again: telling the workers to stop waiting")
                for worker in self.workers:
                    self._kill(worker, signal.SIGINT)
        elif sig == signal.SIGUSR1:
            serving = [w for w in self.workers if w.phase is Phase.SERVING and w.conn is not None]
            log.info("Received SIGUSR1: asking %d worker(s) to log their app instances", len(serving))
            for worker in serving:
                with contextlib.suppress(OSError):
                    worker.conn.send(("instances", None))  # type: ignore[union-attr]
        elif sig == signal.SIGHUP and self.mode is Mode.RUNNING:
            self.generation += 1
            self.rolling = True
            log.info("Received SIGHUP: replacing %d worker(s) one by one", len(self._outdated()))
            self._replace_next()

    def readable(self, worker: Worker) -> None:
        """Input: ``worker``'s pipe has messages, or was closed."""
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
                worker.next_ping_at = self.clock() + self.health_check_interval
        elif kind == "ready":
            if worker.phase is not Phase.STARTING:
                return
            worker.phase = Phase.SERVING
            worker.next_ping_at = self.clock() + self.health_check_interval
            log.info("Worker pid %d ready", worker.pid)
            self._memory_when_ready(worker)
            old = worker.replaces
            worker.replaces = None
            if old is not None:
                old.replaced_by = None
                if old.phase is Phase.SERVING:
                    log.info("Worker pid %d replaced by pid %d; draining it", old.pid, worker.pid)
                    self._stop(old)
            if self.replacing is worker:
                self.replacing = None
            if not self.booted and sum(w.phase is Phase.SERVING for w in self.workers) >= self.config.workers:
                self.booted = True
                log.info("All %d worker(s) ready", self.config.workers)
            self._replace_next()
        elif kind == "failed":
            self._startup_failed(worker, str(message[1]))
        elif kind == "retire":
            self._recycle(worker, f"served {message[1]} requests (max_requests)", "max_requests")
        elif kind == "metrics":
            if self.gathered is not None:
                self.gathered.update(worker, worker.slot, message[1])
        elif kind == "instances":
            self._instances_answer(worker, message[1], message[2])

    def _startup_failed(self, worker: Worker, text: str) -> None:
        worker.failed = True
        log.error("Worker pid %d failed to start: %s", worker.pid, text)
        if self.mode is Mode.RUNNING:
            self.exit_code = EXIT_STARTUP_FAILED
            self._begin_stop("A worker failed to start")
        elif worker.phase is not Phase.STOPPING:
            self._stop(worker)

    def exited(self, worker: Worker) -> None:
        """Input: ``worker``'s process has ended."""
        if worker.conn is not None:
            self.readable(worker)  # a last message, "failed" say, comes before the exit
        worker.process.join()
        self.workers.remove(worker)
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        if self.gathered is not None:
            self.gathered.retire(worker)
        self._instances_answer(worker, None, None)
        how = describe_exit(worker.process.exitcode)
        if worker.phase is Phase.STOPPING:
            log.info("Worker pid %d exited (%s)", worker.pid, how)
        elif worker.phase is Phase.STARTING:
            if not worker.failed:
                self._startup_failed(worker, f"it exited ({how}) before it was ready")
        elif self.mode is Mode.RUNNING:
            heir = worker.replaced_by
            self._restarted("unresponsive" if worker.unresponsive else "died")
            if heir is not None:
                heir.replaces = None  # already on its way: it takes the free place
                log.warning("Worker pid %d died (%s); pid %d is taking its place", worker.pid, how, heir.pid)
            else:
                log.warning("Worker pid %d died (%s); starting a replacement", worker.pid, how)
                self._spawn(slot=worker.slot)
        if self.replacing is worker:
            self.replacing = None
        self._replace_next()

    def _outdated(self) -> list[Worker]:
        return [
            w
            for w in self.workers
            if w.phase is Phase.SERVING and w.generation < self.generation and w.replaced_by is None
        ]

    # -- metrics and the app-instance report ---------------------------------------------
    def _restarted(self, reason: str) -> None:
        if self.gathered is not None:
            self.gathered.restarted(reason)

    def instances_report(self, timeout: float = 5.0) -> str:
        """Every serving worker's report of its app instances (called from the metrics
        listener's thread: the supervising thread asks the workers and collects)."""
        ask = _Ask(set(), [], threading.Event())
        self._asks_in.put(ask)
        wakeup = self._wakeup_write
        if wakeup is not None:
            with contextlib.suppress(OSError):
                wakeup.send(b"\0")
        answered = ask.done.wait(timeout)
        texts = sorted(ask.texts)
        if not answered:
            texts.append(f"(not every worker answered within {timeout:g}s)")
        return "\n".join(texts) + "\n"

    def _ask_workers(self, ask: _Ask) -> None:
        self._ask_seq += 1
        for worker in self.workers:
            if worker.phase is Phase.SERVING and worker.conn is not None:
                with contextlib.suppress(OSError):
                    worker.conn.send(("instances", self._ask_seq))
                    ask.waiting.add(worker)
        if ask.waiting:
            self._asks[self._ask_seq] = ask
        else:
            ask.done.set()

    def _instances_answer(self, worker: Worker, seq: int | None, text: str | None) -> None:
        """``worker``'s report for the ask ``seq``; with ``seq`` None, it exited and
        answers nothing more."""
        for number, ask in list(self._asks.items()):
            if (seq is not None and number != seq) or worker not in ask.waiting:
                continue
            ask.waiting.discard(worker)
            if text is not None:
                ask.texts.append(text)
            if not ask.waiting:
                del self._asks[number]
                ask.done.set()

    # -- recycling and rolling restart: one replacement at a time --------------------------
    def _recycle(self, worker: Worker, reason: str, setting: str) -> None:
        """``worker`` reached a recycling limit: queue it for replacement, unless it is
        already on its way out (stopping, being replaced, or queued for another reason)."""
        if (
            self.mode is not Mode.RUNNING
            or worker.phase is not Phase.SERVING
            or worker.replaced_by is not None
            or worker.retire_reason is not None
        ):
            return
        worker.retire_reason = reason
        worker.retire_setting = setting
        self._replace_next()

    def _replace_next(self) -> None:
        """Start the next replacement, if none is starting: the first serving worker queued
        for recycling or, during a rolling restart, started before the last SIGHUP. The old
        worker gets SIGTERM once its replacement is ready (see :meth:`_message`), and only
        then does the next replacement start."""
        if self.mode is not Mode.RUNNING or self.replacing is not None:
            return
        due = [
            w
            for w in self.workers
            if w.phase is Phase.SERVING
            and w.replaced_by is None
            and (w.retire_reason is not None or (self.rolling and w.generation < self.generation))
        ]
        if due:
            old = due[0]
            if old.retire_reason is not None:
                log.info("Worker pid %d %s; replacing it", old.pid, old.retire_reason)
            self._restarted(old.retire_setting or "reload")
            self.replacing = self._spawn(replaces=old)
        elif self.rolling and not any(
            w.generation < self.generation and w.phase is not Phase.STOPPING for w in self.workers
        ):
            self.rolling = False
            log.info("Rolling restart complete")

    def _memory_when_ready(self, worker: Worker) -> None:
        """A worker already over ``max_worker_memory`` when ready is left alone: its
        replacement would be just as large, and replaced in its turn, forever."""
        if self.memory_limit is None:
            return
        rss = self.launcher.memory(worker.process)
        if rss is not None and rss > self.memory_limit:
            worker.over_memory_when_ready = True
            log.warning(
                "Worker pid %d uses %d MiB as soon as it is ready, more than max_worker_memory (%d): "
                "it is not replaced for its memory, as its replacement would be as large; raise max_worker_memory",
                worker.pid,
                math.ceil(rss / MiB),
                self.config.max_worker_memory,
            )

    def _check_memory(self) -> None:
        """Read each serving worker's memory; queue those over ``max_worker_memory``."""
        assert self.memory_limit is not None
        for worker in list(self.workers):
            if (
                worker.phase is not Phase.SERVING
                or worker.replaced_by is not None
                or worker.retire_reason is not None
                or worker.over_memory_when_ready
            ):
                continue
            rss = self.launcher.memory(worker.process)
            if rss is not None and rss > self.memory_limit:
                used = math.ceil(rss / MiB)
                self._recycle(
                    worker, f"used {used} MiB (max_worker_memory {self.config.max_worker_memory})", "max_worker_memory"
                )

    def _age_reached(self, worker: Worker, now: float) -> None:
        worker.retire_at = math.inf  # once: the deadline is not looked at again
        limit = f"max_worker_age {_seconds(self.config.max_worker_age or 0)}"
        if self.config.max_worker_age_jitter:
            limit += f" + {_seconds(self.config.max_worker_age_jitter)} jitter"
        self._recycle(worker, f"is {_seconds(now - worker.started_at)} old ({limit})", "max_worker_age")

    # -- time ------------------------------------------------------------------------------
    def _deadline_of(self, worker: Worker) -> float:
        if worker.phase is Phase.STARTING:
            return worker.started_at + self.startup_timeout
        if worker.phase is Phase.SERVING:
            return min(self._health_deadline(worker), worker.retire_at)
        return worker.kill_at if worker.kill_at is not None else math.inf

    def _health_deadline(self, worker: Worker) -> float:
        if worker.ping_sent_at is not None:
            return worker.ping_sent_at + self.health_check_timeout
        return worker.next_ping_at

    def next_deadline(self) -> float:
        """When :meth:`time_passed` next has something to do (``math.inf``: nothing)."""
        workers = min((self._deadline_of(w) for w in self.workers), default=math.inf)
        return min(workers, self.next_memory_check, self.close_sockets_at)

    def time_passed(self) -> None:
        """Input: the clock moved on; act on every deadline it reached."""
        now = self.clock()
        self._close_sockets_when_due()
        if self.next_memory_check <= now:
            self.next_memory_check = now + self.memory_check_interval
            self._check_memory()
        for worker in list(self.workers):
            if self._deadline_of(worker) > now:
                continue
            if worker.phase is Phase.STARTING:
                self._kill(worker, signal.SIGKILL)
                self._startup_failed(worker, f"not ready within startup_timeout ({self.startup_timeout:g}s)")
            elif worker.phase is Phase.SERVING:
                if worker.retire_at <= now:
                    self._age_reached(worker, now)
                if self._health_deadline(worker) <= now:
                    self._health_check(worker, now)
            else:
                log.error("Worker pid %d did not exit within %gs; killing it", worker.pid, self.stop_timeout)
                worker.kill_at = None
                self._kill(worker, signal.SIGKILL)
                if self.mode is Mode.STOPPING and self.exit_code == 0:
                    self.exit_code = EXIT_KILLED

    def _health_check(self, worker: Worker, now: float) -> None:
        """Time to ping ``worker``, or its answer is overdue: kill it (then replaced)."""
        if worker.ping_sent_at is None:
            self._ping(worker, now)
            return
        log.warning(
            "Worker pid %d did not answer a health check within %gs; killing it",
            worker.pid,
            self.health_check_timeout,
        )
        worker.ping_sent_at = None
        worker.next_ping_at = math.inf
        worker.unresponsive = True
        self._kill(worker, signal.SIGKILL)

    def _ping(self, worker: Worker, now: float) -> None:
        worker.ping_seq += 1
        worker.ping_sent_at = now
        if worker.conn is None:
            return  # its pipe is closed: it is exiting, or it will miss the deadline
        with contextlib.suppress(OSError):
            worker.conn.send(("ping", worker.ping_seq))


def _seconds(value: float) -> str:
    """3600.0 -> "3600s", 2.04 -> "2s", 12.37 -> "12.4s"."""
    return f"{round(value, 1):g}s"
