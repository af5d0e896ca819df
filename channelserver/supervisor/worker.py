"""One worker process: how the parent starts and signals it, and what runs inside it.

:class:`SpawnLauncher` starts a worker with multiprocessing's "spawn" method (a fresh
interpreter, so no thread, event loop or lock of the parent leaks into it), hands it the
listening sockets as inherited file descriptors and one end of a duplex pipe, sends it
signals, and reads its resident memory (from ``/proc``, where there is one). It is the
:class:`~channelserver.supervisor.multiprocess.Supervisor`'s default :class:`Launcher`;
the supervisor's unit tests give it one of fake processes instead.

Inside the process, :func:`worker_main` sets up logging (the parent's ``worker_logging``,
called with ``config.log_level``), imports the app and runs one
:class:`~channelserver.server.server.Server` on its own event loop, with its own
SIGINT/SIGTERM handling: a worker stops exactly as a single server process does. It talks
to the parent over the pipe, in small tuples:

====================  ==========================================================
worker -> parent      ``("ready",)`` once listening; ``("failed", text)`` when it
                      cannot start; ``("pong", n)``; ``("retire", requests)`` once
                      it served ``max_requests`` (+ its jitter) HTTP requests and
                      WebSocket connections, counted alike as each starts its app;
                      with ``--metrics``, ``("metrics", snapshot)`` every second and
                      once more as it exits; ``("instances", n, text)``
parent -> worker      ``("ping", n)``, answered from the worker's event loop, so a
                      worker whose loop is stuck does not answer; ``("instances",
                      n)``, answered with the report of its running app instances
====================  ==========================================================

A worker whose parent is gone sees its pipe close and shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ..config import Config
from ..errors import EXIT_OK, EXIT_STARTUP_FAILED, StartupError
from ..importer import import_app
from ..server.server import Server, run
from ..server.tasks import exit_watchdog

__all__ = ["Launcher", "SpawnLauncher", "WorkerPipe", "WorkerProcess", "WorkerSpec", "worker_main"]

log = logging.getLogger("channelserver.error")

#: How often a worker ships its metrics to the parent (with ``--metrics``).
METRICS_INTERVAL = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to know; pickled to the spawned process."""

    config: Config
    app_target: str
    #: Ask to be replaced after this many requests and connections (None: never).
    max_requests: int | None
    #: Called first thing in the worker with ``config.log_level`` (a spawned process
    #: starts with no logging): a module-level function or a ``functools.partial`` of one.
    logging: Callable[[str], None]
    #: Its place among the workers ("worker" in the metrics); a replacement takes its
    #: predecessor's.
    slot: int = 0


# -- the parent's side: starting and signalling a worker ---------------------------------------


class WorkerProcess(Protocol):
    """What the supervisor uses of a worker process (a multiprocessing process)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def sentinel(self) -> int: ...
    @property
    def exitcode(self) -> int | None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...


class WorkerPipe(Protocol):
    """The parent's end of a worker's pipe (a :class:`multiprocessing.connection.Connection`)."""

    def poll(self, timeout: float | None = 0.0) -> bool: ...
    def recv(self) -> Any: ...
    def send(self, obj: Any) -> None: ...
    def close(self) -> None: ...


class Launcher(Protocol):
    """Starts worker processes, sends them signals and reads their memory."""

    def start(self, spec: WorkerSpec, sockets: list[socket.socket]) -> tuple[WorkerProcess, WorkerPipe]: ...
    def signal(self, process: WorkerProcess, sig: int) -> None: ...
    @property
    def measures_memory(self) -> bool:
        """Whether :meth:`memory` can read a worker's memory on this platform."""
        ...

    def memory(self, process: WorkerProcess) -> int | None:
        """The process's resident memory (RSS) in bytes; None if it cannot be read."""
        ...


class SpawnLauncher:
    """Worker processes started with multiprocessing's "spawn" method."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        #: Linux and the like: /proc/PID/statm gives the resident size in pages.
        self.measures_memory = os.path.exists("/proc/self/statm")

    def start(self, spec: WorkerSpec, sockets: list[socket.socket]) -> tuple[WorkerProcess, WorkerPipe]:
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(target=worker_main, args=(spec, child_end, sockets), name="channelserver-worker")
        process.start()
        child_end.close()
        return process, parent_end

    def signal(self, process: WorkerProcess, sig: int) -> None:
        """Send ``sig`` unless the process has already exited."""
        with contextlib.suppress(ProcessLookupError):
            if process.is_alive() and process.pid:
                os.kill(process.pid, sig)

    def memory(self, process: WorkerProcess) -> int | None:
        """Resident set size from ``/proc/PID/statm`` (its second field, in pages)."""
        if not self.measures_memory or not process.pid:
            return None
        try:
            with open(f"/proc/{process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * mmap.PAGESIZE
        except (OSError, ValueError, IndexError):
            return None  # it exited meanwhile


# -- inside the worker process ---------------------------------------------------------------


def worker_main(spec: WorkerSpec, conn: Connection, sockets: list[socket.socket]) -> None:
    """Entry point of a worker process: import the app, serve, exit with the right code.

    SIGINT is ignored until the server's own handlers are in place: a Ctrl-C in a terminal
    reaches every process of the group, and the parent forwards what matters. SIGHUP is the
    parent's (rolling restart) and is ignored here, so one sent to the whole process group
    does not kill the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the parent asks over the pipe
    spec.logging(spec.config.log_level)
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
            if self.server is not None and self.server.state is not None and self.server.state.metrics is not None:
                _report(self.conn, ("metrics", self.server.snapshot()))  # its last word
            self.conn.close()

    def _ready(self, server: Server) -> None:
        """Every socket listens: answer the parent's pings from now on, and say so."""
        self.server = server
        server.worker = str(self.spec.slot)
        self.loop = loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._parent_spoke)
        _report(self.conn, ("ready",))
        self._request_counted()
        if server.state is not None and server.state.metrics is not None:
            self._send_metrics()

    def _send_metrics(self) -> None:
        """Ship this worker's counters to the parent, now and every second."""
        assert self.server is not None and self.loop is not None
        _report(self.conn, ("metrics", self.server.snapshot()))
        self.loop.call_later(METRICS_INTERVAL, self._send_metrics)

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
                elif message[0] == "instances" and self.server is not None:
                    if message[1] is None:  # the parent got SIGUSR1: into the log
                        self.server.log_instances()
                    else:
                        self.conn.send(("instances", message[1], self.server.instances_report()))
        except (EOFError, OSError):
            assert self.loop is not None and self.server is not None
            self.loop.remove_reader(self.conn.fileno())
            log.warning("The supervising process is gone; shutting down")
            self.server.handle_exit(signal.SIGTERM)
