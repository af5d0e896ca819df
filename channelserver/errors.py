"""Errors the server raises into applications and at start-up. Stdlib only."""

from __future__ import annotations

__all__ = [
    "EXIT_KILLED",
    "EXIT_OK",
    "EXIT_STARTUP_FAILED",
    "ASGIProtocolError",
    "ClientDisconnected",
    "ConfigError",
    "StartupError",
]

#: Exit codes of ``python -m channelserver`` (and of each worker process).
EXIT_OK = 0
#: The supervisor had to kill a worker that did not stop within its bound.
EXIT_KILLED = 1
#: The server could not start (bad app, cannot bind, lifespan startup failed).
EXIT_STARTUP_FAILED = 3


class ConfigError(ValueError):
    """A setting has a bad value or an unknown name. The message names it."""


class StartupError(RuntimeError):
    """The server cannot start (cannot import the app, cannot bind). One clear line."""


class ASGIProtocolError(RuntimeError):
    """The application sent a message the ASGI spec does not allow in this state.

    Raised inside the app's ``send()``. The text names the message that came, the messages
    allowed, the state and the connection, for example::

        websocket.send not allowed in state CONNECTING; expected websocket.accept,
        websocket.close or websocket.http.response.start (GET /ws/ from 127.0.0.1:53122)
    """


class ClientDisconnected(OSError):
    """The client has gone; raised by ``send()`` (ASGI HTTP spec 2.4).

    For HTTP, as soon as the server knows the peer left. For WebSocket, only once the app
    has been handed ``websocket.disconnect``; before that, frames are dropped quietly so a
    consumer that is mid-send still reaches its disconnect handler.
    """
