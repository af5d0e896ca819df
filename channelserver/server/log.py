"""The server's loggers and what writes to them, stdlib only.

Two loggers: ``channelserver.access`` (one line per HTTP request and per WebSocket, with
``extra={"status_code": ...}``) and ``channelserver.error`` (start-up, shutdown,
application errors). This module holds:

- :func:`configure_logging`, the set-up of ``python -m channelserver`` and of its worker
  processes (``runchannelserver`` installs Django-styled handlers instead, see
  :mod:`channelserver.logging`, the Django edge);
- :class:`RateLimit`, which keeps a flood of bad clients from flooding the log;
- :func:`access_line`, the access log's line for one finished app instance.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from ..protocol.scope import peer

__all__ = ["ACCESS", "ERROR", "RateLimit", "access_line", "configure_logging"]

ACCESS = "channelserver.access"
ERROR = "channelserver.error"

error_log = logging.getLogger(ERROR)
access_log = logging.getLogger(ACCESS)


def configure_logging(level: str) -> None:
    """``python -m channelserver``'s logging, in the parent process and in each worker:
    one stderr handler on the ``channelserver`` logger, lines with time and pid."""
    root = logging.getLogger("channelserver")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
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


def access_line(scope: dict[str, Any], status: int | None, started: float, ws_code: int | None, accepted: bool) -> None:
    """Log one finished app instance: an HTTP request with its status, or a WebSocket
    with whether it was accepted and its close code."""
    who = peer(scope.get("client")) or "-"
    took = (time.monotonic() - started) * 1000
    if scope["type"] == "http":
        query = scope["query_string"]
        path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        access_log.info(
            '%s - "%s %s HTTP/%s" %s %.1fms',
            who,
            scope["method"],
            path,
            scope["http_version"],
            status if status is not None else "-",
            took,
            extra={"status_code": status},
        )
    else:
        access_log.info(
            '%s - "%s %s" closed %s %.1fms',
            who,
            "WebSocket accepted" if accepted else "WebSocket rejected",
            scope["path"],
            ws_code or "-",
            took,
            extra={"status_code": 101 if accepted else 403},
        )
