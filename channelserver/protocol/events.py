"""What the pure machines ask the I/O layer to do.

The machines in this package take inputs (peer bytes, EOF, an app message, "the app
returned", "a timer fired") and return a list of these actions. ``server/`` executes them
in order. They are plain data: tests read them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Action",
    "CancelTimer",
    "CloseTransport",
    "Deliver",
    "Log",
    "SetTimer",
    "StartApp",
    "Upgrade",
    "Write",
]


@dataclass(slots=True)
class Write:
    """Send these bytes to the peer."""

    data: bytes


@dataclass(slots=True)
class CloseTransport:
    """Close the socket once everything written has been flushed; with ``abort``, at
    once, dropping what is unsent (for a peer that stopped reading)."""

    abort: bool = False


@dataclass(slots=True)
class StartApp:
    """Start one ASGI application instance for ``cycle`` with ``scope``. With ``machine``,
    the instance talks to that machine, not the connection's: a WebSocket carried by the
    HTTP/2 stream ``stream`` (RFC 8441), whose output the HTTP/2 machine puts on the stream
    (``HTTP2Connection.from_websocket``)."""

    cycle: Any
    scope: dict[str, Any]
    machine: Any = None
    stream: int | None = None


@dataclass(slots=True)
class Deliver:
    """Queue ``message`` for the app instance of ``cycle`` (returned by its ``receive()``)."""

    cycle: Any
    message: dict[str, Any]


@dataclass(slots=True)
class SetTimer:
    """Fire ``timer_fired(name)`` after ``delay`` seconds, replacing a timer of that name."""

    name: str
    delay: float


@dataclass(slots=True)
class CancelTimer:
    name: str


@dataclass(slots=True)
class Log:
    """One log line. ``level`` is a logging level name ('warning', 'info', ...)."""

    level: str
    message: str
    #: The exception whose traceback belongs with the line, if any.
    exc: BaseException | None = None


@dataclass(slots=True)
class Upgrade:
    """The HTTP connection becomes a WebSocket: hand ``request`` and the bytes that came
    after it to the WebSocket machine. With ``h2c_settings`` (the request's
    ``HTTP2-Settings``), it becomes HTTP/2 instead, the request its stream 1."""

    request: Any
    trailing_data: bytes
    h2c_settings: bytes | None = None


Action = Write | CloseTransport | StartApp | Deliver | SetTimer | CancelTimer | Log | Upgrade
