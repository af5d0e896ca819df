"""The server's loggers and what writes to them, stdlib only.

Two loggers: ``channelserver.access`` (one line per HTTP request and per WebSocket, with
``extra={"status_code": ..., "access": {...}}``) and ``channelserver.error`` (start-up,
shutdown, application errors). This module holds:

- :func:`configure_logging`, the set-up of ``python -m channelserver`` and of its worker
  processes (``runchannelserver`` installs a Django-styled handler instead, see
  :mod:`channelserver.logging`, the Django edge);
- :class:`BatchingStreamHandler`, the handler both install: a ``logging.StreamHandler``
  that writes the lines of one event-loop turn with one write;
- :class:`SecondFormatter`, a ``logging.Formatter`` that works the time stamp out once a
  second;
- :class:`RateLimit`, which keeps a flood of bad clients from flooding the log;
- :func:`access_line`, the access log's line for one finished app instance, as text or as
  one JSON object, made when the instance ends and logged with the other lines of that
  loop turn at the loop's next turn: each a ``LogRecord`` handed to ``Logger.handle`` (in
  the context the line was made in), or, when the server's own handler is the only thing
  on the way (the default set-up, nothing added), the same lines made without records
  (see ``_sole_handler``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import json
import logging
import os
import re
import select
import sys
import threading
import time
import weakref
from typing import Any, Protocol, TextIO, TypeVar

from ..protocol.asgi_http import State as HTTPState
from ..protocol.machine import Machine
from ..protocol.scope import peer

__all__ = [
    "ACCESS",
    "ERROR",
    "BatchingStreamHandler",
    "RateLimit",
    "SecondFormatter",
    "access_fields",
    "access_line",
    "configure_logging",
    "flush_batching_handlers",
]

ACCESS = "channelserver.access"
ERROR = "channelserver.error"

error_log = logging.getLogger(ERROR)
access_log = logging.getLogger(ACCESS)
_INFO = logging.INFO
_LogRecord = logging.LogRecord
_F = TypeVar("_F", bound=logging.Formatter)


class SecondFormatter(logging.Formatter):
    """The server's own formatter: a ``logging.Formatter`` whose ``%(asctime)s`` is the
    same text, worked out once per second instead of once per record (``time.strftime`` is
    most of a formatter's cost), and which writes a JSON access line (a record with an
    ``access`` attribute) bare, so that each line of the log is one JSON object.

    A record without exception or stack text takes a shorter way to the same text: the
    steps of ``Formatter.format`` that apply, and a ``%``-style format (the default) applied
    to the record's attributes directly."""

    _second: tuple[float, str | None, str] = (-1.0, None, "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        style = self._style
        #: A ``%``-style format without defaults: ``_fmt % record.__dict__`` is its text.
        self._percent = type(style) is logging.PercentStyle and not getattr(style, "_defaults", None)
        self._uses_time = self.usesTime()
        #: An access line's text around its time and message, for this process (see
        #: :meth:`access_text`): (pid, the literal pieces, the fields between them).
        self._access_pieces: tuple[int, tuple[str, ...], tuple[str, ...]] | None = None
        self._prefix = ""
        self._prefix_second = self._prefix_msecs = -1.0
        self._prefix_datefmt: str | None = None
        self._prefix_pieces: tuple[int, tuple[str, ...], tuple[str, ...]] | None = None

    def access_text(self, created: float, msecs: float, message: str, status_code: int | None) -> str | None:
        """What :meth:`format` writes for an access record (INFO, ``channelserver.access``,
        no exception) made at ``created``/``msecs`` with ``message``, worked out without
        the record; None when the format names a field other than those of
        :data:`_ACCESS_FIELDS`. (``status_code`` is for subclasses that colour the line.)

        The format is applied once per process, with markers where the time and the
        message go; each line is those pieces around its time and message."""
        pid = _pid or _read_pid()
        pieces = self._access_pieces
        if pieces is None or pieces[0] != pid:
            pieces = self._access_pieces = self._pieces(pid)
        _, texts, between = pieces
        if between == _TIME_THEN_MESSAGE:
            # the text up to the message, kept for the millisecond (many lines share one)
            second, datefmt = created // 1, self.datefmt
            if (
                second != self._prefix_second
                or msecs != self._prefix_msecs
                or datefmt != self._prefix_datefmt
                or pieces is not self._prefix_pieces
            ):
                self._prefix = texts[0] + self._time_text(created, msecs, datefmt) + texts[1]
                self._prefix_second, self._prefix_msecs, self._prefix_datefmt = second, msecs, datefmt
                self._prefix_pieces = pieces
            return self._prefix + message + texts[2]
        if between == ("message",):
            return f"{texts[0]}{message}{texts[1]}"
        if not texts:
            return None
        values = {"asctime": self._time_text(created, msecs, self.datefmt), "message": message}
        parts = [texts[0]]
        for name, text in zip(between, texts[1:], strict=True):
            parts += (values[name], text)
        return "".join(parts)

    def _pieces(self, pid: int) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
        """The format applied to an access record's fixed fields and to markers for its
        time and message, cut at the markers; no pieces when it cannot be (a field of its
        own, a time or message named twice, not a ``%``-style format)."""
        if not self._percent or not set(_FIELD.findall(self._style._fmt)) <= _ACCESS_FIELDS:
            return pid, (), ()
        fields = {"levelname": "INFO", "levelno": _INFO, "name": ACCESS, "process": pid}
        fields.update(asctime="\x00asctime\x00", message="\x00message\x00")
        cut = _MARKER.split(self._style._fmt % fields)
        texts, between = tuple(cut[0::2]), tuple(cut[1::2])
        if len(set(between)) != len(between):
            return pid, (), ()
        return pid, texts, between

    def format(self, record: logging.LogRecord) -> str:
        if "access" in record.__dict__:
            return record.getMessage()
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        message = record.msg
        if record.args or type(message) is not str or type(record) is not _LogRecord:
            message = record.getMessage()
        record.message = message
        if self._uses_time:
            record.asctime = self.formatTime(record, self.datefmt)
        return self.formatMessage(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self._percent:
            try:
                return self._style._fmt % record.__dict__
            except KeyError:
                pass  # logging's own message for a field the record lacks, below
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time_text(record.created, record.msecs, datefmt)

    def _time_text(self, created: float, msecs: float, datefmt: str | None) -> str:
        second = created // 1
        cached, cached_fmt, text = self._second
        if second != cached or datefmt != cached_fmt:
            text = time.strftime(datefmt or self.default_time_format, self.converter(created))
            self._second = (second, datefmt, text)
        if datefmt:
            return text
        return self.default_msec_format % (text, msecs) if self.default_msec_format else text


#: The fields of an access record :meth:`SecondFormatter.access_text` knows without the record.
_ACCESS_FIELDS = frozenset(("message", "asctime", "levelname", "levelno", "name", "process"))
_FIELD = re.compile(r"%\((\w+)\)")
_MARKER = re.compile("\x00(asctime|message)\x00")
_TIME_THEN_MESSAGE = ("asctime", "message")
#: The formatter classes whose ``access_text`` writes what their ``format`` writes for an
#: access record (see :func:`writes_access_text`).
_ACCESS_TEXT_CLASSES: set[type[logging.Formatter]] = set()


def writes_access_text(cls: type[_F]) -> type[_F]:
    """Class decorator: ``cls.access_text`` writes what ``cls.format`` writes for an access
    record, so the default handler may use it for a record only it would see. A subclass is
    not trusted to until it says so too (it may format differently)."""
    _ACCESS_TEXT_CLASSES.add(cls)
    return cls


writes_access_text(SecondFormatter)


#: Lines up to this many bytes are written with one ``write``: to a pipe that several
#: worker processes share (their stderr) such a write is atomic, so the lines of two
#: workers never mix within a line.
PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)
_get_running_loop = asyncio._get_running_loop
#: The context the flush callbacks run in: none of a request's context variables.
_EMPTY_CONTEXT = contextvars.Context()
_batching: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()
_default_formatter = logging.Formatter()  # what Handler.format uses without a formatter
#: What ``Handler.handle`` returns for a record it emitted: the record from 3.12 on.
_FILTER_GIVES_RECORD = sys.version_info >= (3, 12)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``logging.StreamHandler`` that writes the lines of one event-loop turn together:
    the handler ``python -m channelserver`` and ``runchannelserver`` install by default.

    Each record is formatted as it is emitted (a formatter's error is reported against
    its record, as ``StreamHandler`` does), and its line kept. On a running event loop the
    first line of a turn schedules the write for the loop's next turn (``call_soon``):
    the lines of a busy turn cost one ``write`` and one ``flush`` instead of one each, and
    a line waits at most for the end of the turn it was logged in, never for more lines.
    A line is written at once, with those before it, when it is above INFO (an error is
    not held back), when no event loop runs in the thread (start-up, shutdown, a thread of
    the app's), or when :attr:`limit` bytes are waiting. :meth:`flush` (called by
    ``logging.shutdown`` at exit, by ``setStream`` and by :meth:`close`) writes what
    waits. The lines are written in the order they were emitted, in writes of at most
    :data:`PIPE_BUF` bytes each (a longer line alone), so that workers sharing a pipe do
    not interleave within a line.

    Filters, levels and the handler's lock apply as to any handler; the records other
    handlers get are untouched. Only the server's own default handler is one of these.
    """

    #: Write at once when about this many bytes wait (non-ASCII lines counted 4 per character).
    limit = 65536

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._size = 0
        #: The loop whose next turn writes the waiting lines.
        self._soon: asyncio.AbstractEventLoop | None = None
        #: The newest line's record (or line), which a failed write is reported against.
        self._last: logging.LogRecord | str = ""
        _flush_at_exit()
        _batching.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.formatter or _default_formatter).format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self._keep(line, record, _get_running_loop(), record.levelno > _INFO)

    def _keep(self, line: str, record: logging.LogRecord | str, loop: Any, now: bool) -> None:
        """Keep ``line`` for the next turn of ``loop``; write it and those before it at once
        when ``now``, when no loop runs, or above the limit (the caller holds the lock)."""
        self._lines.append(line)
        self._size += len(line) if line.isascii() else 4 * len(line)
        self._last = record
        if loop is None or now:
            self._write()
        else:
            self._keep_rest(loop)

    def _keep_rest(self, loop: asyncio.AbstractEventLoop) -> None:
        """The lines kept, on ``loop``: write them above the limit, else have the loop's
        next turn write them (the caller holds the lock)."""
        if self._size >= self.limit:
            self._write()
            return
        soon = self._soon
        if soon is loop:
            return
        if soon is None or soon.is_closed():
            self._soon = loop
            loop.call_soon(self._turn_over, context=_EMPTY_CONTEXT)
        else:  # a turn of another thread's loop would write them: do not wait for it
            self._write()

    def write_access(self, entries: list[_Entry]) -> bool:
        """Write the access lines of a loop turn (see :func:`access_line`), made from their
        parts without records, with the lines waiting before them: the same text, when the
        formatter is one that can say it (:func:`writes_access_text`). Only for lines
        nothing but this handler would see (see :func:`_sole_handler`). False when it
        cannot: the caller then makes the records and hands them to ``Logger.handle``."""
        formatter = self.formatter
        if type(formatter) not in _ACCESS_TEXT_CLASSES:
            return False
        terminator = self.terminator
        lines = []
        try:
            for clock, message, status, fields, _, _ in entries:
                if _NS_CLOCK:
                    created, msecs, _ = _stamp(clock)
                else:  # _stamp(clock), inlined
                    created = clock
                    msecs = int((created - int(created)) * 1000) + 0.0
                if fields is None:
                    text = formatter.access_text(created, msecs, message, status)  # type: ignore[union-attr]
                    if text is None:
                        return False
                else:  # JSON, which the server's formatters write as it is
                    text = _json_encode({"time": iso_utc(created), "pid": _pid or _read_pid(), **fields})
                lines.append(text + terminator)
        except Exception:
            return False  # the records' way reports it
        with self.lock:  # type: ignore[union-attr]
            self._lines += lines
            self._size += sum(len(line) if line.isascii() else 4 * len(line) for line in lines)
            self._last = lines[-1]
            self._write()
        return True

    def handle(self, record: logging.LogRecord) -> Any:
        """``Handler.handle``: the filters, then :meth:`emit` under the lock (without a
        filter to run, directly)."""
        if self.filters:
            return super().handle(record)
        with self.lock:  # type: ignore[union-attr]
            self.emit(record)
        return record if _FILTER_GIVES_RECORD else True

    def _turn_over(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._soon = None
            self._write()

    def _write(self) -> None:
        """Write the waiting lines (the caller holds the lock)."""
        lines = self._lines
        if not lines:
            return
        size = self._size
        self._lines = []
        self._size = 0
        try:
            stream = self.stream
            if size <= PIPE_BUF:
                stream.write(lines[0] if len(lines) == 1 else "".join(lines))
                stream.flush()
                return
            chunk: list[str] = []
            chunk_size = 0
            for line in lines:
                line_size = len(line) if line.isascii() else 4 * len(line)
                if chunk and chunk_size + line_size > PIPE_BUF:
                    stream.write("".join(chunk))
                    stream.flush()
                    chunk, chunk_size = [], 0
                chunk.append(line)
                chunk_size += line_size
            stream.write("".join(chunk))
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            last = self._last
            if isinstance(last, str):  # a line made without its record: report it as one
                last = logging.makeLogRecord({"name": ACCESS, "levelno": _INFO, "levelname": "INFO", "msg": last})
            self.handleError(last)

    def flush(self) -> None:
        """Write the waiting lines, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            self._write()
            super().flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            super().close()

    def _at_fork_reinit(self) -> None:
        # In a forked child: the parent writes the lines that were waiting.
        super()._at_fork_reinit()  # type: ignore[misc]
        self._lines = []
        self._size = 0
        self._soon = None


_exit_hook = False


def _flush_at_exit() -> None:
    """Have :func:`flush_batching_handlers` run at exit: before logging.shutdown (atexit
    runs the last registered first), and for a handler that logging.config.dictConfig took
    off logging's list of handlers."""
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(flush_batching_handlers)


def flush_batching_handlers() -> None:
    """Log the access lines made and not logged yet (a loop closed before its next turn),
    then write what every :class:`BatchingStreamHandler` holds (at exit; before an
    ``os._exit``)."""
    for turn in list(_all_turns):
        _log_turn(turn)
    for handler in list(_batching):
        with contextlib.suppress(OSError, ValueError):  # a closed stream takes nothing more
            handler.flush()


def configure_logging(level: str) -> None:
    """``python -m channelserver``'s logging, in the parent process and in each worker:
    one stderr handler on the ``channelserver`` logger (a :class:`BatchingStreamHandler`),
    lines with time and pid."""
    root = logging.getLogger("channelserver")
    if not root.handlers:
        handler = BatchingStreamHandler(sys.stderr)
        handler.setFormatter(SecondFormatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


class RateLimit:
    """At most ``most`` lines per ``per`` seconds; the count of those held back is told
    with the next line let through."""

    __slots__ = ("count", "most", "per", "suppressed", "window_start")

    def __init__(self, per: float, most: int) -> None:
        self.per = per
        self.most = most
        self.window_start = 0.0
        self.count = 0
        self.suppressed = 0

    def allow(self) -> tuple[bool, int]:
        now = time.monotonic()
        if now - self.window_start > self.per:
            self.window_start = now
            self.count = 0
        self.count += 1
        if self.count > self.most:
            self.suppressed += 1
            return False, 0
        held, self.suppressed = self.suppressed, 0
        return True, held


# -- the access line -------------------------------------------------------------------------
class AppInstance(Protocol):
    """What the access line reads of a finished app instance (``server.app.AppInstance``)."""

    scope: dict[str, Any]
    #: The status the app started its response with (timed instances only).
    status: int | None
    #: ``time.monotonic()`` when the instance was made.
    started: float
    cycle: Any
    machine: Machine


# ``Logger.info`` would walk the stack for the caller's file and line (``findCaller``),
# about a sixth of a line's cost in logging; the record is made here with the caller named instead,
# then handed to ``Logger.handle``: the same record factory, filters, handlers, levels and
# propagation as ``info()``, so a ``LOGGING`` configuration sees every line as before.
_monotonic = time.monotonic
_SOURCE = __file__


def _emit(logger: logging.Logger, entry: _Entry) -> None:
    """An access line's way through ``logging``: its record, handed to ``Logger.handle``
    (run in the context the line was made in, so that filters see its context variables)."""
    clock, message, status, fields, _, task = entry
    record = _record(logger, message or "", {"status_code": status}, clock, task)
    if fields is not None:
        access = {"time": iso_utc(record.created), "pid": _pid or _read_pid(), **fields}
        record.access = access
        record.msg = _json_encode(access)
    logger.handle(record)


#: The line a record names as its caller's: :func:`_emit`'s first.
_LINE = _emit.__code__.co_firstlineno

# -- the default configuration's short way -----------------------------------------------------
# With the logging ``python -m channelserver`` and ``runchannelserver`` set up (and nothing
# added to it), an access record would be made, handed to Logger.handle, and reach one
# handler, the server's own, whose formatter turns it into a line: nothing else would see it.
# Then the lines of a turn are made without their records, the same text (the tests compare
# the two), and written together. A filter, another handler on the way (a LOGGING
# configuration, a test's capture), another formatter, a record factory, a Logger class or
# method of someone else's (error trackers patch Logger.callHandlers to see every record)
# each send the lines the records' way.
_Logger = logging.Logger
_std_handle = logging.Logger.handle
_std_call_handlers = logging.Logger.callHandlers


def _sole_handler(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The server's default handler, when an INFO record of ``logger`` would reach it and
    nothing else: else None."""
    own = logger.__dict__
    if (
        logger.disabled
        or logger.filters
        or type(logger) is not _Logger
        or _Logger.handle is not _std_handle
        or _Logger.callHandlers is not _std_call_handlers
        or _Logger.makeRecord is not _std_make_record
        or logging.getLogRecordFactory() is not _LogRecord
        or "handle" in own
        or "callHandlers" in own
        or "makeRecord" in own
    ):
        return None
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BatchingStreamHandler
                or handler.filters
                or handler.level > _INFO
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


def _stamp(clock: float | None = None) -> tuple[float, float, float]:
    """``created``, ``msecs`` and ``relativeCreated`` of a record made at ``clock`` (a
    ``time.time()`` reading, ``time.time_ns()`` from 3.13 on, as ``LogRecord`` reads it;
    now by default), as this Python's ``LogRecord.__init__`` works them out."""
    if _NS_CLOCK:
        ns = int(_time_ns() if clock is None else clock)
        created = ns / 1e9
        msecs = (ns % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != ns // 1_000_000_000:
            msecs = 0.0
        return created, msecs, (ns - _START) / 1e6
    now = _time() if clock is None else clock
    return now, int((now - int(now)) * 1000) + 0.0, (now - _START) * 1000


# -- the access line's LogRecord, made quickly -----------------------------------------------
# Every access record has the same name, level, source, line and function, so most of what
# ``LogRecord.__init__`` works out (the level's name, the file name and module from the
# path, ...) is the same each time: it is worked out once, into a template of the record's
# attributes, and each record is a copy of it with the fields that change filled in, as
# ``LogRecord.__init__`` of this Python fills them (the tests compare the two). Used only
# while the record factory is ``logging.LogRecord`` and ``makeRecord`` is ``Logger``'s own;
# otherwise, and on a Python whose records have fields not listed here, ``makeRecord``.
_std_make_record = logging.Logger.makeRecord
_new_object = object.__new__
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_time = time.time
_time_ns = time.time_ns
_START: float = logging._startTime  # type: ignore[attr-defined]
#: From 3.13 on a record's time is read with ``time.time_ns()``.
_NS_CLOCK = sys.version_info >= (3, 13)
#: The fields a template holds, the same in every access record.
_FIXED_FIELDS = frozenset(
    [
        "name",
        "args",
        "levelname",
        "levelno",
        "pathname",
        "filename",
        "module",
        "exc_info",
        "exc_text",
        "stack_info",
        "lineno",
        "funcName",
    ]
)
#: The fields filled in for each record (``taskName`` from 3.12 on).
_CHANGING_FIELDS = frozenset(
    ["msg", "created", "msecs", "relativeCreated", "thread", "threadName", "processName", "process"]
    + (["taskName"] if sys.version_info >= (3, 12) else [])
)
#: The template (None until the first record; empty when the quick way is not taken).
_template: dict[str, Any] | None = None
#: ``_record``'s default Task: the one running.
_RUNNING: Any = object()


def _record(
    logger: logging.Logger,
    message: str,
    extra: dict[str, Any],
    clock: float | None = None,
    task: Any = _RUNNING,
) -> logging.LogRecord:
    """``logger.makeRecord(...)`` for an access line, without its repeated work: the record
    of a line made at ``clock`` (see :func:`_stamp`; now by default) in ``task``
    (3.12+: whose name is ``taskName``; by default the running Task). A record factory or
    ``makeRecord`` of someone else's makes it now."""
    template = _template
    if template is None:
        template = _make_template(logger)
    if (
        not template
        or logging.getLogRecordFactory() is not _LogRecord
        or type(logger).makeRecord is not _std_make_record
        or "makeRecord" in logger.__dict__
    ):
        return logger.makeRecord(logger.name, _INFO, _SOURCE, _LINE, message, (), None, "access_line", extra)
    fields = template.copy()
    fields["msg"] = message
    fields["created"], fields["msecs"], fields["relativeCreated"] = _stamp(clock)
    if logging.logThreads:
        fields["thread"] = _get_ident()
        fields["threadName"] = _current_thread().name
    else:
        fields["thread"] = fields["threadName"] = None
    if logging.logMultiprocessing:
        multiprocessing = sys.modules.get("multiprocessing")
        # try/except as in LogRecord (cheaper than contextlib.suppress): multiprocessing may
        # be half imported
        try:
            process_name = "MainProcess" if multiprocessing is None else multiprocessing.current_process().name
        except Exception:
            process_name = "MainProcess"
        fields["processName"] = process_name
    else:
        fields["processName"] = None
    fields["process"] = _pid or _read_pid() if logging.logProcesses else None
    if "taskName" in fields:
        task_name = None
        if getattr(logging, "logAsyncioTasks", False):
            try:
                if task is _RUNNING:
                    task = asyncio.current_task()
                task_name = task.get_name()
            except Exception:  # no task, or no loop running, as in LogRecord
                task_name = None
        fields["taskName"] = task_name
    fields.update(extra)  # "status_code", "access": never one of the record's own
    record = _new_object(_LogRecord)
    record.__dict__ = fields
    return record


#: ``os.getpid()``, read once per process (0: not yet, or forked since).
_pid = 0


def _read_pid() -> int:
    global _pid
    _watch_forks()
    _pid = os.getpid()
    return _pid


_fork_hook = False


def _watch_forks() -> None:
    """Have :func:`_forked` run in every forked child (once the pid is kept, or lines wait)."""
    global _fork_hook
    if not _fork_hook:
        _fork_hook = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forked)


def _forked() -> None:
    """In a forked child: its own pid; the parent logs the lines it had made."""
    global _pid
    _pid = 0
    for turn in list(_all_turns):
        turn.entries, turn.loop = [], None


def _make_template(logger: logging.Logger) -> dict[str, Any]:
    global _template
    fields = _LogRecord(logger.name, _INFO, _SOURCE, _LINE, "", (), None, "access_line").__dict__
    _template = dict(fields) if set(fields) == _FIXED_FIELDS | _CHANGING_FIELDS else {}
    return _template


def access_line(instance: AppInstance, json_format: bool = False) -> None:
    """Log one finished app instance: an HTTP request with its status, or a WebSocket
    with whether it was accepted and its close code; as text, or as one JSON object.

    On a running loop the line is made now (its text, its time, the context and Task it
    was made in) and logged at the loop's next turn, with the other lines of this turn
    (see :func:`_log`); without one, at once."""
    if json_format:
        message = None
        fields: dict[str, Any] | None = access_fields(instance)
        status = fields["status"]  # type: ignore[index]
    else:
        fields = None
        scope = instance.scope
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"  # scope.peer(), inlined
        took = (_monotonic() - instance.started) * 1000
        if scope["type"] == "http":
            status = instance.status
            query = scope["query_string"]
            path = scope["path"] + "?" + query.decode("latin-1") if query else scope["path"]
            message = (
                f'{who} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" '
                f"{'-' if status is None else status} {took:.1f}ms"
            )
        else:
            accepted, code = instance.machine.access_facts()
            verb = "WebSocket accepted" if accepted else "WebSocket rejected"
            message = f'{who} - "{verb} {scope["path"]}" closed {code or "-"} {took:.1f}ms'
            status = 101 if accepted else 403
    loop = _get_running_loop()
    task = _current_task() if _TASK_NAMES and loop is not None else None
    entry = (_time_ns() if _NS_CLOCK else _time(), message, status, fields, _copy_context(), task)
    if loop is None:
        _log([entry])
        return
    try:
        turn = _turns.turn
    except AttributeError:
        turn = _turns.turn = _Turn()
    turn.entries.append(entry)
    if turn.loop is not loop:
        if turn.loop is None:
            turn.loop = loop
            loop.call_soon(_log_turn, turn, context=_EMPTY_CONTEXT)
        else:  # lines a loop of this thread left (it stopped before its next turn)
            _log_turn(turn)


# -- the access lines of a loop turn, logged together ----------------------------------------
#: An access line made, to be logged: the clock reading it was made at (see :func:`_stamp`),
#: its text (None for JSON), the status for the record's ``status_code``, its JSON fields
#: (None for text), the context it was made in and its Task (3.12+, for ``taskName``).
_Entry = tuple[float, "str | None", "int | None", "dict[str, Any] | None", contextvars.Context, Any]
_copy_context = contextvars.copy_context
_current_task = asyncio.current_task
#: From 3.12 on a record names its Task.
_TASK_NAMES = sys.version_info >= (3, 12)


class _Turn:
    """One thread's access lines made in the current turn of its loop."""

    __slots__ = ("__weakref__", "entries", "loop")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        #: The loop whose next turn logs them.
        self.loop: asyncio.AbstractEventLoop | None = None
        _all_turns.add(self)
        _flush_at_exit()
        _watch_forks()


_turns = threading.local()
_all_turns: weakref.WeakSet[_Turn] = weakref.WeakSet()


def _log_turn(turn: _Turn) -> None:
    entries, turn.entries, turn.loop = turn.entries, [], None
    if entries:
        _log(entries)


def _log(entries: list[_Entry]) -> None:
    """Log access lines as ``logging`` says at this moment: written by the server's own
    handler when nothing else would see them (see :func:`_sole_handler`), else each as
    its record handed to ``Logger.handle``, in the context its line was made in."""
    logger = access_log
    if not logger.isEnabledFor(_INFO):
        return
    handler = _sole_handler(logger)
    if handler is not None and handler.write_access(entries):
        return
    for entry in entries:
        entry[4].run(_emit, logger, entry)


def access_fields(instance: AppInstance) -> dict[str, Any]:
    """What a JSON access line says of one finished app instance (without its time).

    HTTP: ``status`` is what the app sent, or 500 when the app failed before starting a
    response (the server answered it), else null (the client left first). WebSocket:
    ``status`` is 101 when the handshake was accepted, else 403 as in the text line's
    ``status_code`` (the exact denial status, 403, 500 or 503, is not kept per
    connection); ``closed_by`` is "server" when the server or the app sent the first close
    frame, "client" when the client did or the connection was lost.
    """
    scope = instance.scope
    took = round((_monotonic() - instance.started) * 1000, 3)
    client = peer(scope.get("client"))
    if scope["type"] == "http":
        status = instance.status
        if status is None and getattr(instance.cycle, "state", None) is HTTPState.FAILED:
            status = 500
        return {
            "type": "http",
            "client": client,
            "method": scope["method"],
            "path": scope["path"],
            "has_query": bool(scope["query_string"]),
            "http_version": scope["http_version"],
            "status": status,
            "duration_ms": took,
        }
    machine = instance.machine
    accepted, code = machine.access_facts()
    closed_by = None
    if accepted:
        closed_by = "server" if getattr(machine, "close_code", None) is not None else "client"
    return {
        "type": "websocket",
        "client": client,
        "path": scope["path"],
        "has_query": bool(scope["query_string"]),
        "accepted": accepted,
        "status": 101 if accepted else 403,
        "close_code": code,
        "closed_by": closed_by,
        "duration_ms": took,
    }


_utc_second: tuple[float, str] = (-1.0, "")


def iso_utc(created: float) -> str:
    """``created`` (seconds since the epoch) as ISO 8601 UTC to the millisecond,
    ``2026-12-01T19:30:00.123Z``; the seconds part worked out once per second."""
    global _utc_second
    second = created // 1
    cached, text = _utc_second
    if second != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _utc_second = (second, text)
    return f"{text}.{int((created - second) * 1000):03d}Z"


#: ``json.dumps(value, separators=(",", ":"))`` without making an encoder per call.
_json_encode = json.JSONEncoder(separators=(",", ":")).encode
