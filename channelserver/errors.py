"""Errors the server raises into applications and at start-up. Stdlib only."""

from __future__ import annotations

__all__ = ["ASGIProtocolError", "ClientDisconnected", "ConfigError", "StartupError"]


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
