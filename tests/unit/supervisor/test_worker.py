"""The worker side of the contract with the Supervisor, without spawning a process.

The logging set-up the Supervisor is handed reaches each worker in its
:class:`~channelserver.supervisor.worker.WorkerSpec` (pickled: a module-level function or
a ``functools.partial`` of one) and is called first thing, with ``config.log_level``; a
worker that cannot import its app says so on its pipe and exits with code 3.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from channelserver.config import Config
from channelserver.errors import EXIT_STARTUP_FAILED
from channelserver.server.log import configure_logging
from channelserver.supervisor.worker import SpawnLauncher, WorkerSpec, worker_main

from .fakes import FakePipe, Harness, MiB, no_logging

calls: list[tuple[Any, ...]] = []


def record_logging(level: str, *, where: str = "") -> None:
    calls.append((level, where))


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """worker_main ignores SIGINT and SIGHUP, as a worker process should; not this one."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_the_supervisor_hands_its_worker_logging_to_every_worker() -> None:
    h = Harness(workers=2)
    h.start()
    h.exit(101, -signal.SIGKILL)
    assert [p.spec.logging for p in h.launcher.started] == [no_logging] * 3


def test_a_worker_spec_with_a_module_level_function_or_a_partial_pickles() -> None:
    plain = WorkerSpec(Config(port=0), "app:app", None, configure_logging)
    assert pickle.loads(pickle.dumps(plain)).logging is configure_logging
    partial = WorkerSpec(Config(port=0), "app:app", None, functools.partial(record_logging, where="command"))
    calls.clear()
    pickle.loads(pickle.dumps(partial)).logging("warning")
    assert calls == [("warning", "command")]


def test_a_worker_sets_up_logging_with_the_log_level_then_reports_an_import_failure(restore_signals: None) -> None:
    calls.clear()
    pipe = FakePipe()
    spec = WorkerSpec(
        Config(port=0, log_level="debug"),
        "tests_no_such_module:app",
        None,
        functools.partial(record_logging, where="worker"),
    )
    with pytest.raises(SystemExit) as exited:
        worker_main(spec, pipe, [])  # type: ignore[arg-type]
    assert exited.value.code == EXIT_STARTUP_FAILED
    assert calls == [("debug", "worker")]
    assert len(pipe.sent) == 1
    kind, text = pipe.sent[0]
    assert kind == "failed"
    assert "tests_no_such_module" in text


def test_the_spawn_launcher_reads_a_workers_resident_memory_from_proc_where_there_is_one() -> None:
    launcher = SpawnLauncher()
    me = SimpleNamespace(pid=os.getpid())
    if sys.platform != "linux":
        assert launcher.measures_memory is os.path.exists("/proc/self/statm")
        return
    assert launcher.measures_memory
    rss = launcher.memory(me)  # type: ignore[arg-type]
    assert rss is not None
    assert abs(rss - psutil.Process().memory_info().rss) < 8 * MiB
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert launcher.memory(SimpleNamespace(pid=gone.pid)) is None  # type: ignore[arg-type]
