"""The Supervisor's rules, one test each, with fake processes and a fake clock.

Nothing is spawned and nothing sleeps: the harness (``fakes.py``) plays the workers' pipe
messages, their exits, the parent's signals and the passing of time into the supervisor's
inputs, and the tests read what it started, what it signalled, and its exit code. The
rules are those of :mod:`channelserver.supervisor.multiprocess` and of the "What the parent
does" table in docs/lifecycle.md.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import pytest

from channelserver.errors import EXIT_KILLED, EXIT_OK, EXIT_STARTUP_FAILED
from channelserver.supervisor.multiprocess import Phase

from .fakes import Harness

SIGTERM, SIGKILL, SIGINT, SIGHUP = signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP


def stop_all(h: Harness) -> None:
    """SIGTERM to the parent, then every worker drains and exits 0."""
    h.signal(SIGTERM)
    for pid in h.live:
        h.exit(pid, 0)


# -- a worker that exits while serving is replaced ------------------------------------------------


def test_a_worker_that_exits_while_serving_is_replaced_at_once() -> None:
    h = Harness(workers=2)
    first, second = h.start()
    h.exit(first, -SIGKILL)
    assert h.pids == [first, second, 103]
    assert h.live == [second, 103]
    assert h.launcher.signals == []  # the other worker is not touched
    h.say(103, "ready")
    assert h.worker(103).phase is Phase.SERVING
    assert not h.supervisor.done
    stop_all(h)
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_OK


# -- a health-check timeout kills, then replaces --------------------------------------------------


def test_a_worker_that_does_not_answer_a_ping_in_time_is_killed_then_replaced() -> None:
    h = Harness(workers=2, supervisor={"health_check_interval": 10, "health_check_timeout": 30})
    answering, stuck = h.start()
    h.process(stuck).answers_pings = False
    h.advance(10)  # the first pings
    assert h.process(stuck).pipe.sent == [("ping", 1)]
    h.advance(29.9)
    assert h.launcher.signals == []
    h.advance(0.2)
    assert h.launcher.signals == [(stuck, SIGKILL)]  # the answering worker is left alone
    assert h.pids == [answering, stuck]  # replaced once it has exited, not before
    h.exit(stuck, -SIGKILL)
    assert h.pids == [answering, stuck, 103]
    h.say(103, "ready")
    h.advance(600)  # both go on answering
    assert h.launcher.signals == [(stuck, SIGKILL)]


def test_a_pong_for_an_older_ping_does_not_count() -> None:
    h = Harness(workers=1, supervisor={"health_check_interval": 10, "health_check_timeout": 30})
    (pid,) = h.start()
    h.process(pid).answers_pings = False
    h.advance(10)
    h.say(pid, "pong", 0)
    h.advance(30)
    assert h.signals_to(pid) == [SIGKILL]


# -- a worker that fails before it is ready stops everything: exit code 3, no respawn ------------


def fail_by_message(h: Harness, pid: int) -> None:
    h.say(pid, "failed", "Could not import 'app:app': ModuleNotFoundError: No module named 'app'")


def fail_by_exit(h: Harness, pid: int) -> None:
    h.exit(pid, 1)


def fail_by_timeout(h: Harness, pid: int) -> None:
    h.say(h.pids[0], "ready")  # the other one is ready in time
    h.advance(60)


@pytest.mark.parametrize(
    "fail", [fail_by_message, fail_by_exit, fail_by_timeout], ids=["says failed", "exits", "not ready in time"]
)
def test_a_worker_that_fails_before_it_is_ready_stops_everything_with_exit_code_3(
    fail: Callable[[Harness, int], None],
) -> None:
    h = Harness(workers=2, supervisor={"startup_timeout": 60})
    ok, failing = h.start(ready=False)
    fail(h, failing)
    assert h.supervisor.exit_code == EXIT_STARTUP_FAILED
    assert h.signals_to(ok) == [SIGTERM]
    if fail is fail_by_timeout:
        assert h.signals_to(failing) == [SIGKILL, SIGTERM]
    for pid in h.live:
        h.exit(pid, 0 if pid == ok else EXIT_STARTUP_FAILED)
    assert h.pids == [ok, failing]  # no respawn
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_STARTUP_FAILED


def test_a_replacement_that_fails_to_start_stops_everything_too() -> None:
    h = Harness(workers=2)
    first, second = h.start()
    h.exit(first, -SIGKILL)
    fail_by_message(h, 103)
    assert h.signals_to(second) == [SIGTERM]
    h.exit(103, EXIT_STARTUP_FAILED)
    h.exit(second, 0)
    assert h.pids == [first, second, 103]
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_STARTUP_FAILED


# -- max_requests: the replacement is started and ready before the old worker gets SIGTERM -------


def test_a_worker_that_retires_is_replaced_and_stopped_only_once_its_replacement_is_ready() -> None:
    h = Harness(workers=2, max_requests=100)
    old, other = h.start()
    h.say(old, "retire", 100)
    assert h.pids == [old, other, 103]
    h.say(old, "retire", 101)  # asked again: still one replacement
    assert h.pids == [old, other, 103]
    assert h.launcher.signals == []
    h.say(103, "ready")
    assert h.launcher.signals == [(old, SIGTERM)]
    h.exit(old, 0)
    assert h.live == [other, 103]
    assert h.pids == [old, other, 103]  # a worker that was told to stop is not replaced


def test_each_worker_gets_its_own_max_requests_with_jitter() -> None:
    h = Harness(workers=3, max_requests=100, max_requests_jitter=10)
    h.start()
    assert all(100 <= p.spec.max_requests <= 110 for p in h.launcher.started)  # type: ignore[operator]


def test_a_retiring_worker_that_dies_leaves_its_place_to_the_replacement_already_starting() -> None:
    h = Harness(workers=2, max_requests=100)
    old, other = h.start()
    h.say(old, "retire", 100)
    h.exit(old, -SIGKILL)
    assert h.pids == [old, other, 103]  # no second replacement
    h.say(103, "ready")
    assert h.launcher.signals == []


# -- SIGHUP: a rolling restart, one worker at a time -----------------------------------------------


def test_sighup_replaces_every_worker_one_at_a_time_each_ready_before_the_old_one_stops() -> None:
    h = Harness(workers=3)
    old = h.start()
    h.signal(SIGHUP)
    for n, pid in enumerate(old):
        new = 104 + n
        assert h.pids == [*old, *range(104, new + 1)]  # one replacement at a time
        assert h.signals_to(pid) == []  # not before its replacement is ready
        h.say(new, "ready")
        assert h.signals_to(pid) == [SIGTERM]
        h.exit(pid, 0)
    assert h.live == [104, 105, 106]
    assert h.pids == [*old, 104, 105, 106]
    assert not h.supervisor.rolling


def test_a_second_sighup_replaces_every_worker_started_before_it_the_first_ones_replacements_too() -> None:
    h = Harness(workers=2)
    first, second = h.start()
    h.signal(SIGHUP)
    h.signal(SIGHUP)  # while 103 is starting
    assert h.pids == [first, second, 103]
    h.say(103, "ready")
    h.exit(first, 0)
    assert h.pids == [first, second, 103, 104]
    h.say(104, "ready")
    h.exit(second, 0)
    # 103 started before the second SIGHUP, so it is replaced too; 104 (after it) is not.
    assert h.pids == [first, second, 103, 104, 105]
    h.say(105, "ready")
    assert h.signals_to(103) == [SIGTERM]
    h.exit(103, 0)
    assert h.live == [104, 105]
    assert not h.supervisor.rolling


# -- SIGINT/SIGTERM: all get SIGTERM at once; killed after stop_timeout; exit 0 or 1 ---------------


@pytest.mark.parametrize("sig", [SIGTERM, SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_sends_sigterm_to_every_worker_and_exits_0_when_all_drain(sig: int) -> None:
    h = Harness(workers=3)
    pids = h.start()
    h.signal(sig)
    assert h.launcher.signals == [(pid, SIGTERM) for pid in pids]
    h.advance(h.supervisor.stop_timeout - 0.1)
    for pid in pids:
        h.exit(pid, 0)
    assert h.pids == pids
    assert h.launcher.signals == [(pid, SIGTERM) for pid in pids]
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_OK


def test_a_worker_still_running_after_stop_timeout_is_killed_and_the_exit_code_is_1() -> None:
    h = Harness(workers=2, graceful_timeout=10, app_close_timeout=5)
    quick, slow = h.start()
    # graceful 10 + 2 x app_close 5 + 1 s of close handshakes + 4 x CANCEL_GRACE (1 s) + stop_margin 5
    assert h.supervisor.stop_timeout == 30
    h.signal(SIGTERM)
    h.exit(quick, 0)
    h.advance(29.9)
    assert h.signals_to(slow) == [SIGTERM]
    h.advance(0.2)
    assert h.signals_to(slow) == [SIGTERM, SIGKILL]
    h.exit(slow, -SIGKILL)
    assert h.pids == [quick, slow]
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_KILLED


def test_a_second_sigint_is_forwarded_to_the_workers() -> None:
    h = Harness(workers=2)
    pids = h.start()
    h.signal(SIGINT)
    h.signal(SIGINT)
    assert h.launcher.signals == [(pid, SIGTERM) for pid in pids] + [(pid, SIGINT) for pid in pids]


def test_no_worker_is_replaced_or_recycled_while_stopping() -> None:
    h = Harness(workers=2, max_requests=100)
    first, second = h.start()
    h.signal(SIGTERM)
    h.say(first, "retire", 100)
    h.signal(SIGHUP)
    h.exit(first, -SIGKILL)
    h.exit(second, 0)
    assert h.pids == [first, second]
    assert h.supervisor.done and h.supervisor.exit_code == EXIT_OK


# -- stopping: the parent's listening socket closes when the workers stop accepting ---------------


def test_the_parents_listening_socket_closes_after_drain_delay_when_stopping() -> None:
    h = Harness(workers=2, drain_delay=3.0, drain_spread=2.0)
    listener = socket.socket()
    h.supervisor.sockets = [listener]
    h.start()
    h.signal(SIGTERM)
    assert listener.fileno() != -1  # the workers still serve through drain_delay
    h.advance(2.9)
    assert listener.fileno() != -1
    h.advance(0.2)
    assert listener.fileno() == -1  # new connections are refused from now on
    assert h.supervisor.stop_timeout >= 3.0 + 2.0 + h.config.graceful_timeout


def test_without_drain_delay_the_listening_socket_closes_as_the_stop_begins() -> None:
    h = Harness(workers=1)
    listener = socket.socket()
    h.supervisor.sockets = [listener]
    h.start()
    h.signal(SIGHUP)  # a rolling restart keeps it: the replacements accept on it
    assert listener.fileno() != -1
    h.signal(SIGTERM)
    assert listener.fileno() == -1
