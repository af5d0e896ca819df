"""Console logging for ``runchannelserver``, looking like ``runserver``'s.

The server logs to two loggers: ``channelserver.access`` (one line per HTTP request and
per WebSocket, with ``extra={"status_code": ...}``) and ``channelserver.error`` (start-up,
shutdown, application errors). A project routes them through ``settings.LOGGING`` like any
other logger. When ``LOGGING`` does not name them, ``runchannelserver`` installs the
handler below on both, which prints what ``runserver`` users are used to::

    [01/Dec/2026 19:30:00] 127.0.0.1:50312 - "GET / HTTP/1.1" 200 1.2ms
    [01/Dec/2026 19:30:02] 127.0.0.1:50318 - "WebSocket accepted /ws/echo/" closed 1000 812.0ms

coloured by status on a terminal with Django's palette (``DJANGO_COLORS`` is honoured).
The handler is a :class:`~channelserver.server.log.BatchingStreamHandler`: the lines of one
event-loop turn go to the stream with one write, in the order they were logged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from django.apps import apps
from django.conf import settings
from django.core.management.color import Style, color_style, no_style

from .server.log import ACCESS, BatchingStreamHandler, SecondFormatter, writes_access_text

__all__ = [
    "LOGGER_NAMES",
    "AccessFormatter",
    "ConsoleFormatter",
    "ErrorFormatter",
    "configure_console_logging",
    "console_logging",
    "project_configures",
]

LOGGER_NAMES = ("channelserver", "channelserver.access", "channelserver.error")
TIME_FORMAT = "%d/%b/%Y %H:%M:%S"


def style_for(stream: TextIO, *, no_color: bool = False, force_color: bool = False) -> Style:
    """Django's colour style when ``stream`` is a terminal (or colour is forced)."""
    if no_color or os.environ.get("DJANGO_COLORS") == "nocolor":
        return no_style()
    if force_color or (hasattr(stream, "isatty") and stream.isatty()):
        return color_style(force_color=True)
    return no_style()


def status_role(style: Style, status: int | None) -> Callable[[str], str]:
    """The palette role for a status, as ``django.utils.log.ServerFormatter`` picks it."""
    if not status:
        return lambda text: text
    if 200 <= status < 300:
        return style.HTTP_SUCCESS
    if 100 <= status < 200:
        return style.HTTP_INFO
    if status == 304:
        return style.HTTP_NOT_MODIFIED
    if 300 <= status < 400:
        return style.HTTP_REDIRECT
    if status == 404:
        return style.HTTP_NOT_FOUND
    if 400 <= status < 500:
        return style.HTTP_BAD_REQUEST
    return style.HTTP_SERVER_ERROR


@writes_access_text
class AccessFormatter(SecondFormatter):
    """``[time] message``, coloured by the record's ``status_code``; a JSON access line
    (``--access-log-format json``) bare.

    Unlike Django's ``ServerFormatter`` it colours the formatted line and leaves the
    record alone, so other handlers of the same record see it unchanged.
    """

    def __init__(self, style: Style | None = None) -> None:
        super().__init__("[%(asctime)s] %(message)s", datefmt=TIME_FORMAT)
        self.style = style or no_style()

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return status_role(self.style, getattr(record, "status_code", None))(line)

    def access_text(self, created: float, msecs: float, message: str, status_code: int | None) -> str | None:
        line = super().access_text(created, msecs, message, status_code)
        return None if line is None else status_role(self.style, status_code)(line)


class ErrorFormatter(SecondFormatter):
    """``[time] message`` for information, ``[time] WARNING: message`` above, coloured."""

    def __init__(self, style: Style | None = None) -> None:
        super().__init__("[%(asctime)s] %(message)s", datefmt=TIME_FORMAT)
        self.style = style or no_style()

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if record.levelno >= logging.ERROR:
            return self.style.ERROR(line.replace("] ", f"] {record.levelname}: ", 1))
        if record.levelno >= logging.WARNING:
            return self.style.WARNING(line.replace("] ", f"] {record.levelname}: ", 1))
        return line


@writes_access_text
class ConsoleFormatter(logging.Formatter):
    """The console handler's formatter: an access line (a record of
    ``channelserver.access`` or below it) as :class:`AccessFormatter` writes it, any other
    as :class:`ErrorFormatter` does. One handler serves both loggers, so their lines reach
    the stream in the order they were logged."""

    def __init__(self, style: Style | None = None) -> None:
        super().__init__()
        self.access = AccessFormatter(style)
        self.error = ErrorFormatter(style)

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        if name == ACCESS or name.startswith(_ACCESS_CHILD):
            return self.access.format(record)
        return self.error.format(record)

    def access_text(self, created: float, msecs: float, message: str, status_code: int | None) -> str | None:
        """What :meth:`format` writes for an access record (see ``SecondFormatter.access_text``)."""
        return self.access.access_text(created, msecs, message, status_code)


_ACCESS_CHILD = ACCESS + "."


def project_configures(logging_setting: Mapping[str, Any] | None) -> bool:
    """Whether ``settings.LOGGING`` names one of the channelserver loggers."""
    if not logging_setting:
        return False
    loggers = logging_setting.get("loggers") or {}
    return any(name in loggers for name in LOGGER_NAMES)


def configure_console_logging(
    *,
    logging_setting: Mapping[str, Any] | None,
    level: str,
    level_given: bool,
    stream: TextIO | None = None,
    no_color: bool = False,
    force_color: bool = False,
) -> bool:
    """Install the console handlers unless the project's ``LOGGING`` configures the loggers.

    ``level`` (Config.log_level) is applied to the ``channelserver`` logger when the
    handlers are ours, or when it was given explicitly (``level_given``). Returns whether
    the handlers were installed.
    """
    root = logging.getLogger("channelserver")
    if project_configures(logging_setting):
        if level_given:
            root.setLevel(level.upper())
        return False
    stream = stream if stream is not None else sys.stderr
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(ConsoleFormatter(style_for(stream, no_color=no_color, force_color=force_color)))
    handler._channelserver_console = True  # type: ignore[attr-defined]
    for name in ("channelserver.access", "channelserver.error"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_channelserver_console", False)]:
            logger.removeHandler(old)
            old.close()  # writes the lines it holds
        logger.addHandler(handler)
        logger.propagate = False
        # LOGGING with disable_existing_loggers=True disables loggers it does not name.
        logger.disabled = False
    root.disabled = False
    root.setLevel(level.upper())
    return True


def console_logging(level: str, *, level_given: bool, no_color: bool, force_color: bool) -> None:
    """``runchannelserver``'s logging: the console handlers above, or the project's
    ``LOGGING`` when it names the server's loggers.

    The command calls it in its own process, where Django is set up. With ``--workers``
    the supervisor calls it (a :func:`functools.partial` of the command's options) in each
    spawned worker before the worker imports the application: Django is set up first there
    too, so ``settings.LOGGING`` applies before the handlers, in the same order as in the
    parent, and the workers' lines look like the parent's.
    """
    if not apps.ready:
        import django

        django.setup(set_prefix=False)
    configure_console_logging(
        logging_setting=getattr(settings, "LOGGING", None),
        level=level,
        level_given=level_given,
        stream=sys.stderr,
        no_color=no_color,
        force_color=force_color,
    )
