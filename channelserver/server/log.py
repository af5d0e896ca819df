"""The server's loggers and what writes to them, stdlib only.

Two loggers: ``channelserver.access`` (one line per HTTP request and per WebSocket, with
``extra={"status_code": ..., "access": {...}}``) and ``channelserver.error`` (start-up,
shutdown, application errors). This module holds:

- :func:`configure_logging`, the set-up of ``python -m channelserver`` and of its worker
  processes (``runchannelserver`` installs Django-styled handlers instead, see
  :mod:`channelserver.logging`, the Django edge);
- :class:`SecondFormatter`, a ``logging.Formatter`` that works the time stamp out once a
  second;
- :class:`RateLimit`, which keeps a flood of bad clients from flooding the log;
- :func:`access_line`, the access log's line for one finished app instance, as text or as
  one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Protocol

from ..protocol.asgi_http import State as HTTPState
from ..protocol.machine import Machine
from ..protocol.scope import peer

__all__ = ["ACCESS", "ERROR", "RateLimit", "SecondFormatter", "access_fields", "access_line", "configure_logging"]

ACCESS = "channelserver.access"
ERROR = "channelserver.error"

error_log = logging.getLogger(ERROR)
access_log = logging.getLogger(ACCESS)


class SecondFormatter(logging.Formatter):
    """The server's own formatter: a ``logging.Formatter`` whose ``%(asctime)s`` is the
    same text, worked out once per second instead of once per record (``time.strftime`` is
    most of a formatter's cost), and which writes a JSON access line (a record with an
    ``access`` attribute) bare, so that each line of the log is one JSON object."""

    _second: tuple[float, str | None, str] = (-1.0, None, "")

    def format(self, record: logging.LogRecord) -> str:
        if "access" in record.__dict__:
            return record.getMessage()
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = record.created // 1
        cached, cached_fmt, text = self._second
        if second != cached or datefmt != cached_fmt:
            text = time.strftime(datefmt or self.default_time_format, self.converter(record.created))
            self._second = (second, datefmt, text)
        if datefmt:
            return text
        return self.default_msec_format % (text, record.msecs) if self.default_msec_format else text


def configure_logging(level: str) -> None:
    """``python -m channelserver``'s logging, in the parent process and in each worker:
    one stderr handler on the ``channelserver`` logger, lines with time and pid."""
    root = logging.getLogger("channelserver")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
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
_INFO = logging.INFO
_monotonic = time.monotonic
_SOURCE = __file__


def _emit(message: str, extra: dict[str, Any]) -> logging.LogRecord | None:
    logger = access_log
    if not logger.isEnabledFor(_INFO):
        return None
    record = logger.makeRecord(logger.name, _INFO, _SOURCE, _LINE, message, (), None, "access_line", extra)
    logger.handle(record)
    return record


#: The line a record names as its caller's: :func:`_emit`'s first.
_LINE = _emit.__code__.co_firstlineno


def access_line(instance: AppInstance, json_format: bool = False) -> None:
    """Log one finished app instance: an HTTP request with its status, or a WebSocket
    with whether it was accepted and its close code; as text, or as one JSON object."""
    if json_format:
        _json_line(instance)
        return
    scope = instance.scope
    who = peer(scope.get("client")) or "-"
    took = (_monotonic() - instance.started) * 1000
    if scope["type"] == "http":
        status = instance.status
        query = scope["query_string"]
        path = scope["path"] + "?" + query.decode("latin-1") if query else scope["path"]
        _emit(
            f'{who} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" '
            f"{'-' if status is None else status} {took:.1f}ms",
            {"status_code": status},
        )
    else:
        accepted, code = instance.machine.access_facts()
        verb = "WebSocket accepted" if accepted else "WebSocket rejected"
        _emit(
            f'{who} - "{verb} {scope["path"]}" closed {code or "-"} {took:.1f}ms',
            {"status_code": 101 if accepted else 403},
        )


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


def _json_line(instance: AppInstance) -> None:
    logger = access_log
    if not logger.isEnabledFor(_INFO):
        return
    fields = access_fields(instance)
    record = logger.makeRecord(
        logger.name, _INFO, _SOURCE, _LINE, "", (), None, "access_line", {"status_code": fields["status"]}
    )
    access = {"time": iso_utc(record.created), "pid": os.getpid(), **fields}
    record.access = access
    record.msg = json.dumps(access, separators=(",", ":"))
    logger.handle(record)
