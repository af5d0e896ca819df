"""The server's default log handler, :class:`BatchingStreamHandler`, with real ``logging``
and real event loops (asyncio's and uvloop's): the lines of one loop turn written
together at the next turn, in order; nothing lost at close, at exit, or on a SIGTERM that
the loop handles; errors and lines logged off the loop written at once; filters and a
user's own handlers untouched."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import logging.config
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from channelserver.logging import AccessFormatter, ConsoleFormatter, ErrorFormatter, configure_console_logging
from channelserver.server.log import ACCESS, ERROR, PIPE_BUF, BatchingStreamHandler, access_line, configure_logging

ROOT = Path(__file__).resolve().parents[3]

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class Writes(io.StringIO):
    """A text stream that keeps each ``write`` apart, and counts flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


class Collect(logging.Handler):
    """A user's own handler: keeps every record it is handed, when it is handed it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(params=list(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    loop = LOOPS[request.param]()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def stream() -> Writes:
    return Writes()


@pytest.fixture
def logger(stream: Writes) -> Iterator[logging.Logger]:
    """A logger of its own with a batching handler on ``stream``, message-only lines."""
    logger = logging.getLogger("tests.batching")
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


async def next_turn() -> None:
    """Return once every callback scheduled so far has run: a callback scheduled now
    runs after them (the loop's ready queue is first in, first out)."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


def test_the_lines_of_a_turn_are_written_together_at_the_next_turn(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    async def scenario() -> None:
        for n in range(3):
            logger.info("line %d", n)
        assert stream.writes == []
        await next_turn()
        assert stream.writes == ["INFO line 0\nINFO line 1\nINFO line 2\n"]
        logger.info("line 3")
        assert len(stream.writes) == 1
        await next_turn()
        assert stream.writes[1:] == ["INFO line 3\n"]

    loop.run_until_complete(scenario())
    assert stream.flushes == 2


def test_every_line_is_written_once_in_order_across_turns_and_tasks(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    async def worker(name: str) -> None:
        for n in range(50):
            logger.info("%s %d", name, n)
            if n % 7 == 0:
                await asyncio.sleep(0)

    async def scenario() -> None:
        await asyncio.gather(*(worker(name) for name in "abc"))
        await next_turn()

    loop.run_until_complete(scenario())
    lines = stream.lines()
    assert sorted(lines) == sorted(f"INFO {name} {n}" for name in "abc" for n in range(50))
    for name in "abc":  # each task's lines in the order it logged them
        assert [line for line in lines if line.startswith(f"INFO {name} ")] == [f"INFO {name} {n}" for n in range(50)]
    assert len(stream.writes) < 150


def test_a_warning_is_written_at_once_with_the_lines_before_it(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    async def scenario() -> None:
        logger.info("first")
        logger.warning("trouble")
        assert stream.writes == ["INFO first\nWARNING trouble\n"]
        logger.info("after")
        await next_turn()

    loop.run_until_complete(scenario())
    assert stream.lines() == ["INFO first", "WARNING trouble", "INFO after"]


def test_off_the_loop_a_line_is_written_at_once(logger: logging.Logger, stream: Writes) -> None:
    logger.info("no loop runs")
    assert stream.writes == ["INFO no loop runs\n"]


def test_a_line_from_another_thread_is_written_at_once_after_the_waiting_ones(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    async def scenario() -> None:
        logger.info("on the loop")
        thread = threading.Thread(target=logger.info, args=("from a thread",))
        thread.start()
        thread.join()
        assert stream.lines() == ["INFO on the loop", "INFO from a thread"]
        await next_turn()

    loop.run_until_complete(scenario())
    assert stream.lines() == ["INFO on the loop", "INFO from a thread"]


def leave_waiting(loop: asyncio.AbstractEventLoop, logger: logging.Logger, text: str) -> None:
    """Log ``text`` in the last turn ``loop`` runs: the write it schedules never runs."""
    loop.call_soon(logger.info, text)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_flush_writes_what_a_closed_loop_left_waiting(logger: logging.Logger, stream: Writes) -> None:
    # asyncio's loop: uvloop's runs the callbacks scheduled in its last turn before it stops.
    loop = asyncio.new_event_loop()
    leave_waiting(loop, logger, "last turn")
    loop.close()
    assert stream.writes == []
    logger.handlers[0].flush()
    assert stream.writes == ["INFO last turn\n"]


def test_a_new_loop_writes_what_a_closed_one_left_waiting_first(logger: logging.Logger, stream: Writes) -> None:
    async def log(text: str) -> None:
        logger.info(text)
        await next_turn()

    first = asyncio.new_event_loop()
    leave_waiting(first, logger, "on the first loop")
    first.close()
    second = uvloop.new_event_loop()
    try:
        second.run_until_complete(log("on the second loop"))
    finally:
        second.close()
    assert stream.writes == ["INFO on the first loop\nINFO on the second loop\n"]


def test_a_long_batch_goes_out_in_writes_of_whole_lines_of_at_most_pipe_buf(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    texts = [f"{n:04d} " + "x" * (n % 150) for n in range(400)] + ["y" * (PIPE_BUF + 10)]

    async def scenario() -> None:
        for text in texts:
            logger.info(text)
        await next_turn()

    loop.run_until_complete(scenario())
    assert stream.lines() == [f"INFO {text}" for text in texts]
    assert len(stream.writes) > 1
    for write in stream.writes:
        assert write.endswith("\n")
        assert len(write.encode()) <= PIPE_BUF or write.count("\n") == 1


def test_the_limit_writes_at_once(loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes) -> None:
    handler = logger.handlers[0]
    assert isinstance(handler, BatchingStreamHandler)
    handler.limit = 100

    async def scenario() -> None:
        for n in range(10):
            logger.info("%030d", n)
        assert stream.writes  # 10 lines of 36 bytes: written at the 3rd, 6th, 9th
        await next_turn()

    loop.run_until_complete(scenario())
    assert stream.lines() == [f"INFO {n:030d}" for n in range(10)]
    assert len(stream.writes) == 4


def test_filters_of_the_handler_and_of_the_logger_still_apply(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger, stream: Writes
) -> None:
    logger.handlers[0].addFilter(lambda record: "secret" not in record.getMessage())
    logger.addFilter(lambda record: record.getMessage() != "dropped by the logger")

    async def scenario() -> None:
        for text in ("kept", "a secret", "dropped by the logger", "also kept"):
            logger.info(text)
        await next_turn()

    loop.run_until_complete(scenario())
    assert stream.lines() == ["INFO kept", "INFO also kept"]


@pytest.fixture
def saved_loggers() -> Iterator[None]:
    """The ``channelserver`` loggers' handlers, levels and flags put back afterwards; the
    handlers a test installed closed."""
    loggers = [logging.getLogger(name) for name in ("channelserver", ACCESS, ERROR)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for logger in loggers:
        logger.handlers = []
    try:
        yield
    finally:
        for logger, handlers, level, propagate, disabled in saved:
            for handler in logger.handlers:
                handler.close()
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture
def server_logging(saved_loggers: None, stream: Writes, monkeypatch: pytest.MonkeyPatch) -> None:
    """``configure_logging`` as ``python -m channelserver`` runs it, on ``stream``."""
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info")


def ours(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers of ``logger`` but pytest's (it adds its own to loggers that do not
    propagate)."""
    return [handler for handler in logger.handlers if type(handler).__module__ != "_pytest.logging"]


def test_configure_logging_installs_one_batching_handler_on_stderr(server_logging: None, stream: Writes) -> None:
    [handler] = ours(logging.getLogger("channelserver"))
    assert isinstance(handler, BatchingStreamHandler)
    assert handler.stream is stream


def test_a_users_handler_from_a_logging_config_gets_every_record_when_it_is_logged(
    server_logging: None, loop: asyncio.AbstractEventLoop, stream: Writes
) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "incremental": False,
            "disable_existing_loggers": False,
            "handlers": {"collect": {"()": Collect}},
            "loggers": {ACCESS: {"handlers": ["collect"], "level": "INFO"}},
        }
    )
    [collect] = ours(logging.getLogger(ACCESS))
    assert isinstance(collect, Collect)
    access = logging.getLogger(ACCESS)

    async def scenario() -> None:
        for n in range(5):
            access.info("request %d", n, extra={"status_code": 200})
            assert len(collect.records) == n + 1  # handed over at once, not batched
        assert stream.writes == []
        await next_turn()

    try:
        loop.run_until_complete(scenario())
    finally:
        access.removeHandler(collect)
    assert [r.getMessage() for r in collect.records] == [f"request {n}" for n in range(5)]
    assert all(r.status_code == 200 for r in collect.records)  # type: ignore[attr-defined]
    assert [line.split(" INFO ", 1)[1] for line in stream.lines()] == [f"request {n}" for n in range(5)]


def test_runchannelserver_installs_one_batching_handler_for_both_loggers_and_keeps_their_order(
    saved_loggers: None, loop: asyncio.AbstractEventLoop, stream: Writes
) -> None:
    assert configure_console_logging(logging_setting=None, level="info", level_given=False, stream=stream)
    [old] = ours(logging.getLogger(ACCESS))
    assert configure_console_logging(logging_setting=None, level="info", level_given=False, stream=stream)
    [handler] = ours(logging.getLogger(ACCESS))  # the second call replaced the first's
    assert ours(logging.getLogger(ERROR)) == [handler] and handler is not old
    assert isinstance(handler, BatchingStreamHandler)
    assert isinstance(handler.formatter, ConsoleFormatter)
    access, error = logging.getLogger(ACCESS), logging.getLogger(ERROR)

    async def scenario() -> None:
        access.info('1.2.3.4:5 - "GET / HTTP/1.1" 200 1.0ms', extra={"status_code": 200})
        error.info("Shutting down")
        access.info('1.2.3.4:5 - "GET /b HTTP/1.1" 404 1.0ms', extra={"status_code": 404})
        error.warning("Something odd")
        access.info('1.2.3.4:5 - "GET /c HTTP/1.1" 200 1.0ms', extra={"status_code": 200})
        await next_turn()

    loop.run_until_complete(scenario())
    assert [line.split("] ", 1)[1] for line in stream.lines()] == [
        '1.2.3.4:5 - "GET / HTTP/1.1" 200 1.0ms',
        "Shutting down",
        '1.2.3.4:5 - "GET /b HTTP/1.1" 404 1.0ms',
        "WARNING: Something odd",
        '1.2.3.4:5 - "GET /c HTTP/1.1" 200 1.0ms',
    ]


def test_the_console_formatter_formats_as_the_access_and_error_formatters() -> None:
    console, access, error = ConsoleFormatter(), AccessFormatter(), ErrorFormatter()
    for name, level, expected in (
        (ACCESS, logging.INFO, access),
        (ACCESS + ".sub", logging.INFO, access),
        (ERROR, logging.INFO, error),
        (ERROR, logging.ERROR, error),
        ("channelserver.accessory", logging.WARNING, error),
    ):
        record = logging.LogRecord(name, level, __file__, 1, "message %s", ("x",), None)
        assert console.format(record) == expected.format(record)


# -- at exit, in a process of its own ---------------------------------------------------------
#: Logs through ``configure_logging``'s handler on an event loop, then ends as the case says.
EXIT_SCRIPT = """
import asyncio, logging, os, signal, sys, time
from types import SimpleNamespace
from channelserver.server.log import access_line, configure_logging, flush_batching_handlers

case, loop_kind = sys.argv[1], sys.argv[2]
if case == "access lines, a user's handler":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
else:
    configure_logging("info")
if case == "dictConfig":  # as django.setup() does after the server set up its logging
    import logging.config
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
access = logging.getLogger("channelserver.access")
if loop_kind == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()

def request(n):
    scope = {"type": "http", "client": None, "method": "GET", "path": f"/{n}", "query_string": b"",
             "http_version": "1.1"}
    return SimpleNamespace(scope=scope, status=200, started=time.monotonic(), cycle=None, machine=None)

def last_turn():
    for n in range(1000):
        if case.startswith("access lines"):
            access_line(request(n))  # made now, logged at the next turn, which never comes
        else:
            access.info("line %d", n)
    if case == "os._exit":
        flush_batching_handlers()
        os._exit(3)
    loop.stop()

async def main():
    if case == "sigterm":
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()

loop.run_until_complete(main())
# The loop stops right after the last line, and is closed without another turn.
loop.call_soon(last_turn)
loop.run_forever()
loop.close()
"""


@pytest.mark.parametrize("loop_kind", list(LOOPS))
@pytest.mark.parametrize(
    "case", ["exit", "sigterm", "os._exit", "dictConfig", "access lines", "access lines, a user's handler"]
)
def test_no_line_is_lost_at_exit(case: str, loop_kind: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", EXIT_SCRIPT, case, loop_kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if case == "sigterm":
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == (3 if case == "os._exit" else 0), err
    lines = [line.rsplit("INFO ", 1)[-1] for line in err.splitlines()]
    if case.startswith("access lines"):
        assert [line.split('"')[1] for line in lines] == [f"GET /{n} HTTP/1.1" for n in range(1000)], err[-2000:]
    else:
        assert lines == [f"line {n}" for n in range(1000)], err[-2000:]


FORK_SCRIPT = """
import asyncio, logging, os, time
from types import SimpleNamespace
from channelserver.server.log import access_line, configure_logging, flush_batching_handlers

configure_logging("info")
access = logging.getLogger("channelserver.access")

def request(path):
    scope = {"type": "http", "client": None, "method": "GET", "path": path, "query_string": b"",
             "http_version": "1.1"}
    return SimpleNamespace(scope=scope, status=200, started=time.monotonic(), cycle=None, machine=None)

async def main():
    access.info("logged before the fork")
    access_line(request("/made-before-the-fork"))
    if os.fork() == 0:
        access.info("logged in the child")
        access_line(request("/made-in-the-child"))
        flush_batching_handlers()
        os._exit(0)
    os.wait()
    access.info("logged in the parent")

asyncio.run(main())
"""


def test_a_forked_child_does_not_write_its_parents_waiting_lines_again() -> None:
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = [line.split(" INFO ", 1)[1].removesuffix("ms").rstrip("0123456789.") for line in done.stderr.splitlines()]
    assert lines == [
        "logged in the child",
        '- - "GET /made-in-the-child HTTP/1.1" 200 ',
        "logged before the fork",
        "logged in the parent",  # in the same turn: the turn's access lines are logged after it
        '- - "GET /made-before-the-fork HTTP/1.1" 200 ',
    ], done.stderr
    pids = {line.split("[", 1)[1].split("]", 1)[0] for line in done.stderr.splitlines() if "child" in line}
    assert len(pids) == 1  # the child's lines name the child, the access line too


# -- access lines: made when the app instance ends, logged at the loop's next turn -----------
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Finished:
    """A finished app instance as the access line reads it."""

    def __init__(self, path: str, status: int | None = 200) -> None:
        self.scope = {
            "type": "http",
            "client": ("127.0.0.1", 50312),
            "method": "GET",
            "path": path,
            "query_string": b"",
            "http_version": "1.1",
        }
        self.status = status
        self.started = time.monotonic()
        self.cycle = None
        self.machine = None


@pytest.fixture
def collect(saved_loggers: None) -> Collect:
    """A user's handler on ``channelserver.access`` (the records' way), nothing else."""
    handler = Collect()
    logger = logging.getLogger(ACCESS)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def test_access_lines_are_logged_at_the_next_turn_in_the_context_they_were_made_in(
    loop: asyncio.AbstractEventLoop, collect: Collect
) -> None:
    seen: list[str] = []

    def with_request_id(record: logging.LogRecord) -> bool:
        seen.append(REQUEST_ID.get())
        return True

    collect.addFilter(with_request_id)

    async def request(n: int) -> None:
        REQUEST_ID.set(f"request {n}")
        access_line(Finished(f"/{n}"))  # type: ignore[arg-type]
        assert collect.records == []  # made, not logged yet: the three requests run in one turn

    async def scenario() -> None:
        await asyncio.gather(*(request(n) for n in range(3)))
        await next_turn()
        assert [r.getMessage().split('"')[1] for r in collect.records] == [f"GET /{n} HTTP/1.1" for n in range(3)]

    loop.run_until_complete(scenario())
    assert seen == ["request 0", "request 1", "request 2"]


def test_an_access_record_has_the_time_and_task_its_line_was_made_at(
    loop: asyncio.AbstractEventLoop, collect: Collect
) -> None:
    made: list[float] = []

    async def request() -> None:
        made.append(time.time())
        access_line(Finished("/timed"))  # type: ignore[arg-type]

    async def scenario() -> None:
        await asyncio.create_task(request(), name="the request")
        await next_turn()

    loop.run_until_complete(scenario())
    [record] = collect.records
    assert made[0] <= record.created <= made[0] + 0.5
    if sys.version_info >= (3, 12):
        assert record.taskName == "the request"  # type: ignore[attr-defined]


def test_an_access_line_off_the_loop_is_logged_at_once(collect: Collect) -> None:
    access_line(Finished("/now"))  # type: ignore[arg-type]
    assert len(collect.records) == 1


def test_the_logging_of_the_moment_applies_to_a_turns_lines(loop: asyncio.AbstractEventLoop, collect: Collect) -> None:
    async def scenario() -> None:
        access_line(Finished("/a"))  # type: ignore[arg-type]
        logging.getLogger(ACCESS).setLevel(logging.WARNING)  # before the turn ends
        await next_turn()

    loop.run_until_complete(scenario())
    assert collect.records == []
