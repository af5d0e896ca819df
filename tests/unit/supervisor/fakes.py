"""Fake worker processes, pipes and clock for the Supervisor's rules: nothing is spawned.

:class:`Harness` builds a :class:`~channelserver.supervisor.multiprocess.Supervisor` with a
:class:`FakeLauncher` and a :class:`FakeClock`, then plays the world around it through the
supervisor's four inputs: a worker says something on its pipe (:meth:`Harness.say`), a
worker process exits (:meth:`Harness.exit`), the parent gets a signal
(:meth:`Harness.signal`), time passes (:meth:`Harness.advance`, which stops at every
deadline on the way, as the supervisor's loop wakes for each). A fake process never exits
by itself, whatever it is sent: the test says when it does. Unless told otherwise
(``answers_pings = False``), a serving fake answers each ping at once. A fake's resident
memory is what the test sets in its ``rss`` (:data:`IDLE_RSS` to begin with).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from channelserver.config import Config
from channelserver.supervisor.multiprocess import Supervisor, Worker
from channelserver.supervisor.worker import WorkerProcess, WorkerSpec

MiB = 1024 * 1024
#: What a fake worker uses until the test says otherwise.
IDLE_RSS = 60 * MiB


def no_logging(level: str) -> None:
    """The worker_logging handed to the Supervisor: a fake process never calls it."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakePipe:
    """The parent's end of a worker's pipe: ``inbox`` is what the worker sent."""

    inbox: list[tuple[Any, ...]] = field(default_factory=list)
    sent: list[tuple[Any, ...]] = field(default_factory=list)
    closed: bool = False

    def poll(self, timeout: float | None = 0.0) -> bool:
        if self.closed:
            raise OSError("handle is closed")
        return bool(self.inbox)

    def recv(self) -> Any:
        return self.inbox.pop(0)

    def send(self, obj: Any) -> None:
        self.sent.append(obj)

    def close(self) -> None:
        self.closed = True


@dataclass(eq=False)
class FakeProcess:
    pid: int
    spec: WorkerSpec
    pipe: FakePipe
    exitcode: int | None = None
    answers_pings: bool = True
    rss: int = IDLE_RSS

    @property
    def sentinel(self) -> int:
        return self.pid

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        assert timeout is not None or self.exitcode is not None, "join() on a live process would block"


class FakeLauncher:
    """Starts fake processes; records every start and every signal sent."""

    def __init__(self, measures_memory: bool = True) -> None:
        self.measures_memory = measures_memory
        self.started: list[FakeProcess] = []
        #: (pid, signal) in the order sent, to live processes only (as os.kill would).
        self.signals: list[tuple[int, int]] = []

    def start(self, spec: WorkerSpec, sockets: list[socket.socket]) -> tuple[FakeProcess, FakePipe]:
        process = FakeProcess(pid=101 + len(self.started), spec=spec, pipe=FakePipe())
        self.started.append(process)
        return process, process.pipe

    def signal(self, process: WorkerProcess, sig: int) -> None:
        if process.is_alive():
            assert process.pid is not None
            self.signals.append((process.pid, sig))

    def memory(self, process: WorkerProcess) -> int | None:
        assert isinstance(process, FakeProcess)
        return process.rss if self.measures_memory and process.is_alive() else None


class Harness:
    def __init__(
        self, *, supervisor: dict[str, float] | None = None, measures_memory: bool = True, **config: Any
    ) -> None:
        self.clock = FakeClock()
        self.launcher = FakeLauncher(measures_memory)
        self.config = Config(port=0, **config)
        self.supervisor = Supervisor(
            self.config,
            "app:app",
            worker_logging=no_logging,
            clock=self.clock,
            launcher=self.launcher,
            **(supervisor or {}),
        )

    # -- what the test looks at --------------------------------------------------------------
    def process(self, pid: int) -> FakeProcess:
        return next(p for p in self.launcher.started if p.pid == pid)

    def worker(self, pid: int) -> Worker:
        return next(w for w in self.supervisor.workers if w.pid == pid)

    @property
    def pids(self) -> list[int]:
        """Every pid started so far, in order."""
        return [p.pid for p in self.launcher.started]

    @property
    def live(self) -> list[int]:
        """The pids the supervisor still watches."""
        return [w.pid for w in self.supervisor.workers]

    def signals_to(self, pid: int) -> list[int]:
        return [sig for to, sig in self.launcher.signals if to == pid]

    # -- the world around the supervisor -----------------------------------------------------
    def start(self, ready: bool = True) -> list[int]:
        """The first workers; each says it is ready unless ``ready`` is False."""
        self.supervisor.start_workers()
        if ready:
            for pid in self.pids:
                self.say(pid, "ready")
        return self.pids

    def say(self, pid: int, *message: Any) -> None:
        self.process(pid).pipe.inbox.append(message)
        self.supervisor.readable(self.worker(pid))

    def exit(self, pid: int, code: int) -> None:
        self.process(pid).exitcode = code
        self.supervisor.exited(self.worker(pid))

    def signal(self, sig: int) -> None:
        self.supervisor.signalled(sig)

    def advance(self, seconds: float) -> None:
        """Move the clock on, stopping at each deadline on the way; live, serving fakes
        that answer pings answer each one at once."""
        until = self.clock.now + seconds
        for _ in range(10_000):
            self._answer_pings()
            deadline = self.supervisor.next_deadline()
            if deadline > until:
                break
            self.clock.now = max(self.clock.now, deadline)
            self.supervisor.time_passed()
        else:
            raise AssertionError("the supervisor's deadlines do not move on")
        self.clock.now = until
        self.supervisor.time_passed()
        self._answer_pings()

    def _answer_pings(self) -> None:
        for worker in list(self.supervisor.workers):
            process = self.process(worker.pid)
            if not process.answers_pings or process.exitcode is not None:
                continue
            pings = [m for m in process.pipe.sent if m[0] == "ping"]
            if pings and worker.ping_sent_at is not None:
                self.say(worker.pid, "pong", pings[-1][1])
