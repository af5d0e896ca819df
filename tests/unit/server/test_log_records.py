"""The access line's ``LogRecord``, made without ``LogRecord.__init__``'s repeated work, is
the record ``Logger.makeRecord`` makes, attribute for attribute and in the same order, on
this Python; a record factory or ``makeRecord`` of the user's own is still used; the
server's formatter writes what ``logging.Formatter`` writes for any record; and the line
the default configuration makes without a record is the text the record's way writes,
while anything a user adds on the way (filter, handler, formatter, record factory, a
patched ``Logger``) gets the record as before."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
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


# -- the default configuration's short way ---------------------------------------------------
# With only the server's own handler on the way, an access line is made without its record;
# it must be the text the record's way writes, and anything else on the way (a filter, a
# handler, a formatter, a record factory, a patched Logger) must get the record as before.
REQUEST = {
    "type": "http",
    "client": ("127.0.0.1", 50312),
    "method": "GET",
    "path": "/items/7",
    "query_string": b"x=1",
    "http_version": "1.1",
}


class Finished:
    """A finished app instance as the access line reads it."""

    def __init__(self, status: int | None) -> None:
        self.scope = REQUEST
        self.status = status
        self.started = 100.0
        self.cycle = None
        self.machine = None


class Lines(io.StringIO):
    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clocks of both ways frozen: the record's time and the line's duration."""
    monkeypatch.setattr(log, "_time", lambda: 1_800_000_000.25)
    monkeypatch.setattr(log, "_time_ns", lambda: 1_800_000_000_250_000_000)
    monkeypatch.setattr(log, "_monotonic", lambda: 100.0123)


@pytest.fixture
def records_made(monkeypatch: pytest.MonkeyPatch) -> list[logging.LogRecord]:
    """Every access record made (none on the short way)."""
    made: list[logging.LogRecord] = []
    make = log._record

    def spy(*args: Any) -> logging.LogRecord:
        made.append(make(*args))
        return made[-1]

    monkeypatch.setattr(log, "_record", spy)
    return made


@pytest.fixture
def server_loggers() -> Iterator[None]:
    """The ``channelserver`` loggers put back as they were; none of pytest's capture
    handlers on them meanwhile (it adds one to every logger that does not propagate)."""
    loggers = [logging.getLogger(name) for name in ("channelserver", ACCESS, log.ERROR)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled, lg.filters[:]) for lg in loggers]
    for logger in loggers:
        logger.handlers = []
    try:
        yield
    finally:
        for logger, handlers, level, propagate, disabled, filters in saved:
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers, logger.filters = handlers, filters
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def only_ours() -> None:
    for name in ("channelserver", ACCESS, log.ERROR):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h).__module__ == "_pytest.logging"]:
            logger.removeHandler(handler)


def write_lines(json_format: bool, statuses: tuple[int | None, ...] = (200, 404, None)) -> None:
    async def lines() -> None:
        for status in statuses:
            log.access_line(Finished(status), json_format)  # type: ignore[arg-type]

    asyncio.run(lines())


def install(kind: str, stream: io.StringIO) -> logging.Handler:
    if kind == "python -m channelserver":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stderr", stream)
            log.configure_logging("info")
        return logging.getLogger("channelserver").handlers[0]
    from channelserver.logging import configure_console_logging

    configure_console_logging(
        logging_setting=None, level="info", level_given=False, stream=stream, force_color=kind.endswith("coloured")
    )
    return logging.getLogger(ACCESS).handlers[0]


@pytest.mark.parametrize("json_format", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("kind", ["python -m channelserver", "runchannelserver", "runchannelserver, coloured"])
def test_the_short_way_writes_what_the_records_way_writes(
    kind: str,
    json_format: bool,
    frozen: None,
    records_made: list[logging.LogRecord],
    server_loggers: None,
) -> None:
    short, recorded = Lines(), Lines()
    handler = install(kind, short)
    only_ours()
    write_lines(json_format)
    assert records_made == []  # no record: the short way was taken
    assert len(short.lines()) == 3
    handler.setStream(recorded)
    handler.addFilter(lambda record: True)  # a filter to run: the record's way
    write_lines(json_format)
    assert len(records_made) == 3
    assert short.getvalue() == recorded.getvalue()


def test_the_line_is_as_before(frozen: None, server_loggers: None) -> None:
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    write_lines(False, (201,))
    [line] = stream.lines()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_800_000_000))
    assert line == f'{stamp},250 [{os.getpid()}] INFO 127.0.0.1:50312 - "GET /items/7?x=1 HTTP/1.1" 201 12.3ms'


def test_a_filter_on_the_logger_runs(server_loggers: None, records_made: list[logging.LogRecord]) -> None:
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    logging.getLogger(ACCESS).addFilter(lambda record: record.status_code != 404)  # type: ignore[attr-defined]
    write_lines(False)
    assert [line.split('" ')[1].split()[0] for line in stream.lines()] == ["200", "-"]
    assert len(records_made) == 3


def test_a_handler_of_the_users_gets_every_record_and_the_line_is_still_written(
    server_loggers: None, records_made: list[logging.LogRecord]
) -> None:
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    seen: list[logging.LogRecord] = []
    user = logging.Handler()
    user.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("channelserver").addHandler(user)
    write_lines(True)
    assert [record.status_code for record in seen] == [200, 404, None]  # type: ignore[attr-defined]
    assert [json.loads(line)["status"] for line in stream.lines()] == [200, 404, None]
    assert [json.loads(record.getMessage()) for record in seen] == [json.loads(line) for line in stream.lines()]


def test_a_patched_call_handlers_sees_every_record(server_loggers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # as error trackers do (Sentry's logging integration patches Logger.callHandlers)
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    seen: list[str] = []
    call_handlers = logging.Logger.callHandlers

    def patched(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        call_handlers(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", patched)
    write_lines(False)
    assert len(seen) == 3
    assert all(line.endswith(text) for line, text in zip(stream.lines(), seen, strict=True))


def test_a_formatter_of_the_users_is_used(server_loggers: None) -> None:
    stream = Lines()
    handler = install("python -m channelserver", stream)
    only_ours()
    handler.setFormatter(logging.Formatter("%(name)s|%(status_code)s|%(message)s"))
    write_lines(False, (200,))
    [line] = stream.lines()
    assert line.startswith('channelserver.access|200|127.0.0.1:50312 - "GET /items/7?x=1 HTTP/1.1" 200 ')


def test_a_record_factory_of_the_users_gets_every_record(server_loggers: None) -> None:
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    factory = logging.getLogRecordFactory()
    made: list[Tagged] = []

    def tagged(*args: Any, **kwargs: Any) -> Tagged:
        made.append(Tagged(*args, **kwargs))
        return made[-1]

    logging.setLogRecordFactory(tagged)
    try:
        write_lines(False)
    finally:
        logging.setLogRecordFactory(factory)
    assert len(made) == 3 and len(stream.lines()) == 3


def test_off_the_loop_the_line_is_written_at_once(server_loggers: None) -> None:
    stream = Lines()
    install("python -m channelserver", stream)
    only_ours()
    log.access_line(Finished(200))  # type: ignore[arg-type]
    assert len(stream.lines()) == 1
