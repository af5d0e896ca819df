"""The access line's ``LogRecord``, made without ``LogRecord.__init__``'s repeated work, is
the record ``Logger.makeRecord`` makes, attribute for attribute and in the same order, on
this Python; a record factory or ``makeRecord`` of the user's own is still used; and the
server's formatter writes what ``logging.Formatter`` writes for any record."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channelserver.server import log
from channelserver.server.log import ACCESS, SecondFormatter

ROOT = Path(__file__).resolve().parents[3]
NOW_NS = 1_800_000_000_999_999_900  # rounds up to the next second as a float: the 3.13 corner


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of making a record read the same clock."""
    monkeypatch.setattr(time, "time", lambda: NOW_NS / 1e9)
    monkeypatch.setattr(time, "time_ns", lambda: NOW_NS)
    monkeypatch.setattr(log, "_time", time.time)
    monkeypatch.setattr(log, "_time_ns", time.time_ns)


@pytest.fixture
def access() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        logger.setLevel(level)


def standard(logger: logging.Logger, message: str, extra: dict[str, Any]) -> logging.LogRecord:
    """The record ``Logger.makeRecord`` makes for an access line."""
    return logger.makeRecord(logger.name, logging.INFO, log._SOURCE, log._LINE, message, (), None, "access_line", extra)


def same(ours: logging.LogRecord, theirs: logging.LogRecord) -> None:
    assert type(ours) is type(theirs)
    assert list(ours.__dict__.items()) == list(theirs.__dict__.items())


def test_the_record_is_makerecords_attribute_for_attribute(frozen_clock: None, access: logging.Logger) -> None:
    extra = {"status_code": 200}
    same(log._record(access, "a line", extra), standard(access, "a line", extra))


def test_inside_a_task_the_record_is_makerecords_too(frozen_clock: None, access: logging.Logger) -> None:
    async def in_a_task() -> tuple[logging.LogRecord, logging.LogRecord]:
        extra = {"status_code": 404}
        return log._record(access, "in a task", extra), standard(access, "in a task", extra)

    async def main() -> tuple[logging.LogRecord, logging.LogRecord]:
        return await asyncio.create_task(in_a_task(), name="the request")

    ours, theirs = asyncio.run(main())
    same(ours, theirs)


@pytest.mark.parametrize("flag", ["logThreads", "logProcesses", "logMultiprocessing"])
def test_logging_switches_apply_as_to_any_record(
    flag: str, frozen_clock: None, access: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, flag, False)
    same(log._record(access, "switched", {}), standard(access, "switched", {}))


def test_the_record_times_agree_with_the_clock(access: logging.Logger) -> None:
    before = time.time()
    record = log._record(access, "now", {})
    after = time.time()
    assert before - 0.001 <= record.created <= after + 0.001
    assert record.msecs == pytest.approx((record.created % 1) * 1000, abs=1.0)
    assert 0 <= record.msecs < 1000


class Tagged(logging.LogRecord):
    """A user's record class, set with ``logging.setLogRecordFactory``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = "mine"


def test_a_record_factory_of_the_users_own_is_used(access: logging.Logger) -> None:
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(Tagged)
    try:
        record = log._record(access, "tagged", {"status_code": 200})
    finally:
        logging.setLogRecordFactory(factory)
    assert type(record) is Tagged and record.tag == "mine"
    assert record.status_code == 200  # type: ignore[attr-defined]


def test_a_makerecord_of_the_users_own_is_used(access: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[logging.LogRecord] = []

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(logging.Logger.makeRecord(access, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(access, "makeRecord", make_record)
    assert log._record(access, "made", {}) is made[0]


def test_a_child_process_names_its_own_pid() -> None:
    script = """
import logging, os, sys, time
from types import SimpleNamespace
from channelserver.server.log import access_line

logging.basicConfig(level=logging.INFO, format="%(process)d %(message)s", stream=sys.stdout)
scope = {"type": "http", "client": ("127.0.0.1", 1), "method": "GET", "path": "/",
         "query_string": b"", "http_version": "1.1"}
request = SimpleNamespace(scope=scope, status=200, started=time.monotonic(), cycle=None, machine=None)
access_line(request)
sys.stdout.flush()
pid = os.fork()
if pid == 0:
    access_line(request)
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
print("child", pid)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    parent_line, child_line, child = done.stdout.splitlines()
    assert parent_line.split()[0] != child_line.split()[0] == child.split()[1]


# -- the formatter ---------------------------------------------------------------------------
def records() -> Iterator[logging.LogRecord]:
    yield logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "plain %s", ("arg",), None)
    yield logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "no args", (), None)
    yield logging.LogRecord(ACCESS, logging.INFO, __file__, 1, {"a": "mapping"}, (), None)  # type: ignore[arg-type]
    try:
        raise ValueError("boom")
    except ValueError:
        yield logging.LogRecord(ACCESS, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    yield logging.LogRecord(ACCESS, logging.WARNING, __file__, 1, "with stack", (), None, sinfo="Stack (most recent)")


@pytest.mark.parametrize(
    "fmt, style, defaults",
    [
        ("%(asctime)s [%(process)d] %(levelname)s %(message)s", "%", None),
        ("%(message)s", "%", None),
        ("%(levelname)s %(custom)s %(message)s", "%", {"custom": "given"}),
        ("{asctime} {levelname} {message}", "{", None),
    ],
)
def test_the_servers_formatter_writes_what_logging_formatter_writes_for_any_record(
    fmt: str, style: Any, defaults: dict[str, Any] | None
) -> None:
    for record in records():
        ours = SecondFormatter(fmt, style=style, defaults=defaults)
        theirs = logging.Formatter(fmt, style=style, defaults=defaults)
        assert ours.format(record) == theirs.format(record)
        record.exc_text = None  # the first formatter cached the traceback's text


def test_a_field_the_record_lacks_is_the_same_error() -> None:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "line", (), None)
    with pytest.raises(ValueError) as theirs:
        logging.Formatter("%(missing)s").format(record)
    with pytest.raises(ValueError) as ours:
        SecondFormatter("%(missing)s").format(record)
    assert str(ours.value) == str(theirs.value)
