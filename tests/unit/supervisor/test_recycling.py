"""Recycling: max_requests, max_worker_memory and max_worker_age, with fake processes.

Each limit retires a worker through the same queue as a SIGHUP rolling restart: one
replacement at a time, started and *ready* before the old worker gets its SIGTERM, and the
next replacement starts only then. Memory is what the test sets on a fake process
(``rss``); the supervisor reads it every ``memory_check_interval`` (1 s) of fake time. The
INFO line saying why a worker is replaced is pinned here, word for word.
"""

from __future__ import annotations

import itertools
import logging
import random
import signal
from collections.abc import Iterator

import pytest

from channelserver.supervisor.multiprocess import Phase

from .fakes import Harness, MiB

SIGTERM, SIGKILL, SIGHUP = signal.SIGTERM, signal.SIGKILL, signal.SIGHUP


class Lines(list[logging.LogRecord]):
    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self if r.levelno == level]


@pytest.fixture
def logged() -> Iterator[Lines]:
    """What the supervisor logs, whatever another test did to the logging tree."""
    lines = Lines()
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lines.append  # type: ignore[method-assign]
    logger = logging.getLogger("channelserver.error")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The fractions of the jitter each new worker draws, in order (then 0.5 each)."""
    fractions: list[float] = []
    drawn = itertools.chain(iter(fractions), itertools.repeat(0.5))
    monkeypatch.setattr(random, "uniform", lambda low, high: low + (high - low) * next(drawn))
    yield fractions


# -- max_worker_memory --------------------------------------------------------------------------------


def test_a_worker_over_max_worker_memory_is_replaced_once_and_stopped_only_when_its_replacement_is_ready(
    logged: Lines,
) -> None:
    h = Harness(workers=2, max_worker_memory=400)
    big, other = h.start()
    h.process(big).rss = 411 * MiB + 1
    h.advance(0.9)
    assert h.pids == [big, other]  # read once a second
    h.advance(0.1)
    assert h.pids == [big, other, 103]
    assert "Worker pid 101 used 412 MiB (max_worker_memory 400); replacing it" in logged.at(logging.INFO)
    h.advance(30)  # still over the limit while the replacement starts: still one replacement
    assert h.pids == [big, other, 103]
    assert h.launcher.signals == []
    h.say(103, "ready")
    assert h.launcher.signals == [(big, SIGTERM)]
    h.advance(30)  # draining, and still as large: not replaced again
    h.exit(big, 0)
    h.advance(30)
    assert h.pids == [big, other, 103]
    assert h.live == [other, 103]
    assert h.launcher.signals == [(big, SIGTERM)]
    assert sum("replacing it" in line for line in logged.at(logging.INFO)) == 1


def test_a_worker_at_max_worker_memory_is_not_replaced() -> None:
    h = Harness(workers=1, max_worker_memory=400)
    (pid,) = h.start()
    h.process(pid).rss = 400 * MiB
    h.advance(60)
    assert h.pids == [pid]


def test_two_workers_over_a_limit_are_replaced_one_at_a_time() -> None:
    h = Harness(workers=3, max_worker_memory=400)
    first, second, third = h.start()
    h.process(first).rss = h.process(second).rss = 500 * MiB
    h.advance(1)
    assert h.pids == [first, second, third, 104]  # one replacement, for the first
    h.advance(20)
    assert h.pids == [first, second, third, 104]  # the second waits its turn
    h.say(104, "ready")
    assert h.launcher.signals == [(first, SIGTERM)]
    assert h.pids == [first, second, third, 104, 105]  # now the second's
    assert h.worker(105).replaces is h.worker(second)
    h.exit(first, 0)
    h.advance(20)
    assert h.signals_to(second) == []  # serving until its replacement is ready
    h.say(105, "ready")
    assert h.launcher.signals == [(first, SIGTERM), (second, SIGTERM)]
    h.exit(second, 0)
    h.advance(20)
    assert h.live == [third, 104, 105]
    assert h.pids == [first, second, third, 104, 105]


def test_a_worker_already_over_max_worker_memory_when_ready_is_not_replaced_in_a_loop(logged: Lines) -> None:
    h = Harness(workers=2, max_worker_memory=100)
    large, other = h.start(ready=False)
    h.process(large).rss = 111 * MiB
    h.say(large, "ready")
    h.say(other, "ready")
    h.advance(30)
    assert h.pids == [large, other]
    assert logged.at(logging.WARNING) == [
        "Worker pid 101 uses 111 MiB as soon as it is ready, more than max_worker_memory (100): it is not replaced "
        "for its memory, as its replacement would be as large; raise max_worker_memory"
    ]
    h.process(other).rss = 101 * MiB  # the other one grew past the limit while serving
    h.advance(1)
    assert h.pids == [large, other, 103]


def test_without_a_way_to_read_memory_max_worker_memory_is_ignored_with_one_warning(logged: Lines) -> None:
    h = Harness(workers=2, max_worker_memory=400, measures_memory=False)
    pids = h.start()
    for pid in pids:
        h.process(pid).rss = 4000 * MiB
    h.advance(60)
    assert h.pids == pids
    assert logged.at(logging.WARNING) == [
        "max_worker_memory (400 MiB) is ignored: a worker's memory cannot be read on this platform (no /proc)"
    ]


# -- max_worker_age ------------------------------------------------------------------------------------


def test_each_worker_gets_its_own_max_worker_age_with_jitter() -> None:
    h = Harness(workers=20, max_worker_age=100, max_worker_age_jitter=10)
    h.start()
    ages = [w.retire_at - w.started_at for w in h.supervisor.workers]
    assert all(100 <= age <= 110 for age in ages), ages
    assert len(set(ages)) > 1


def test_workers_are_replaced_at_max_worker_age_plus_their_jitter_one_at_a_time(
    logged: Lines, jitter: list[float]
) -> None:
    jitter += [0.7, 0.2, 0.9]
    h = Harness(workers=3, max_worker_age=100, max_worker_age_jitter=10)
    first, second, third = h.start()
    h.advance(101.9)
    assert h.pids == [first, second, third]
    h.advance(0.1)  # the second worker drew the least jitter: 102 s
    assert h.pids == [first, second, third, 104]
    assert h.worker(104).replaces is h.worker(second)
    assert logged.at(logging.INFO)[-2:] == [
        "Worker pid 102 is 102s old (max_worker_age 100s + 10s jitter); replacing it",
        "Worker pid 104 starting, to replace pid 102",
    ]
    h.advance(6)  # 108 s: the first is due (107 s) but waits for 104 to be ready
    assert h.pids == [first, second, third, 104]
    h.say(104, "ready")
    assert h.launcher.signals == [(second, SIGTERM)]
    assert h.pids == [first, second, third, 104, 105]
    assert "Worker pid 101 is 107s old (max_worker_age 100s + 10s jitter); replacing it" in logged.at(logging.INFO)
    h.exit(second, 0)
    h.advance(1.5)  # 109.5 s: the third is due and waits for 105
    h.say(105, "ready")
    assert h.launcher.signals == [(second, SIGTERM), (first, SIGTERM)]
    assert h.worker(106).replaces is h.worker(third)
    h.say(106, "ready")
    assert h.launcher.signals == [(second, SIGTERM), (first, SIGTERM), (third, SIGTERM)]
    h.exit(first, 0)
    h.exit(third, 0)
    # The replacements have their own age, from their own start: 102 s + 105 s for 104.
    h.advance(207 - 109.5 - 0.1)
    assert h.pids == [first, second, third, 104, 105, 106]
    h.advance(0.1)
    assert h.pids == [first, second, third, 104, 105, 106, 107]
    assert h.worker(107).replaces is h.worker(104)


def test_a_worker_that_never_gets_ready_is_not_recycled_for_its_age() -> None:
    h = Harness(workers=1, max_worker_age=10, supervisor={"startup_timeout": 60})
    h.start(ready=False)
    h.advance(30)
    assert h.pids == [101]
    assert h.worker(101).phase is Phase.STARTING


def test_max_worker_age_jitter_without_max_worker_age_is_ignored_with_one_warning(logged: Lines) -> None:
    h = Harness(workers=2, max_worker_age_jitter=30, max_requests_jitter=5)
    h.start()
    h.advance(600)
    assert h.pids == [101, 102]
    assert logged.at(logging.WARNING) == [
        "max_requests_jitter (5) is ignored: it applies only with max_requests",
        "max_worker_age_jitter (30s) is ignored: it applies only with max_worker_age",
    ]


# -- one queue for every reason ---------------------------------------------------------------------------


def test_workers_that_ask_to_retire_together_are_replaced_one_at_a_time(logged: Lines) -> None:
    h = Harness(workers=2, max_requests=100)
    first, second = h.start()
    h.say(first, "retire", 100)
    h.say(second, "retire", 100)
    assert h.pids == [first, second, 103]
    h.say(103, "ready")
    assert h.launcher.signals == [(first, SIGTERM)]
    assert h.pids == [first, second, 103, 104]
    h.say(104, "ready")
    assert h.launcher.signals == [(first, SIGTERM), (second, SIGTERM)]
    assert [line for line in logged.at(logging.INFO) if "replacing it" in line] == [
        "Worker pid 101 served 100 requests (max_requests); replacing it",
        "Worker pid 102 served 100 requests (max_requests); replacing it",
    ]


def test_a_worker_over_two_limits_is_replaced_once_for_the_first(logged: Lines) -> None:
    h = Harness(workers=1, max_requests=100, max_worker_memory=400, max_worker_age=50)
    (pid,) = h.start()
    h.say(pid, "retire", 100)
    h.process(pid).rss = 500 * MiB
    h.advance(60)
    assert h.pids == [pid, 102]
    assert [line for line in logged.at(logging.INFO) if "replacing it" in line] == [
        "Worker pid 101 served 100 requests (max_requests); replacing it"
    ]


def test_recycling_and_a_rolling_restart_share_one_queue() -> None:
    h = Harness(workers=2, max_worker_memory=400)
    first, second = h.start()
    h.process(first).rss = 500 * MiB
    h.advance(1)
    assert h.pids == [first, second, 103]
    h.signal(SIGHUP)  # while 103 starts: nothing more starts
    assert h.pids == [first, second, 103]
    h.say(103, "ready")
    assert h.signals_to(first) == [SIGTERM]
    assert h.worker(104).replaces is h.worker(second)
    h.exit(first, 0)
    h.say(104, "ready")
    # 103 started before the SIGHUP: the rolling restart replaces it too.
    assert h.worker(105).replaces is h.worker(103)
    h.say(105, "ready")
    h.exit(second, 0)
    h.exit(103, 0)
    assert h.live == [104, 105]
    assert not h.supervisor.rolling


def test_a_worker_queued_for_recycling_that_dies_is_replaced_once() -> None:
    h = Harness(workers=3, max_worker_memory=400)
    first, second, third = h.start()
    h.process(first).rss = h.process(second).rss = 500 * MiB
    h.advance(1)
    assert h.pids == [first, second, third, 104]
    h.exit(second, -SIGKILL)  # queued behind the first: replaced at once, as any dead worker
    assert h.pids == [first, second, third, 104, 105]
    h.say(104, "ready")
    h.say(105, "ready")
    h.advance(5)
    assert h.pids == [first, second, third, 104, 105]
    assert h.launcher.signals == [(first, SIGTERM)]


def test_nothing_is_recycled_while_stopping() -> None:
    h = Harness(workers=2, max_worker_memory=400, max_worker_age=10)
    first, second = h.start()
    h.signal(SIGTERM)
    h.process(first).rss = 500 * MiB
    h.advance(20)
    h.say(second, "retire", 100)
    assert h.pids == [first, second]
    assert h.supervisor.next_deadline() == h.worker(first).kill_at
    h.exit(first, 0)
    h.exit(second, 0)
    assert h.supervisor.done
