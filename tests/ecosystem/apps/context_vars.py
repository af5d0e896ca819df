"""``tests.ecosystem.apps.context_vars:app``: context variables stay with their app instance.

Each instance reads the module's context variables at its first line (the defaults are
expected: nothing set by an earlier request or another connection), sets them, suspends,
and reads them again (its own values are expected: they live as long as the instance).

- HTTP ``/?token=T``: answers ``{"at_start": ..., "after_await": ...}`` for ``REQUEST``.
- WebSocket ``/?token=T``: sets ``CONNECTION`` on connect; for each text message answers
  ``{"connection": ..., "last_message": ...}`` as seen before it sets ``LAST_MESSAGE`` to
  that message's text.
"""

from __future__ import annotations

import asyncio
import json
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

REQUEST: ContextVar[str | None] = ContextVar("REQUEST", default=None)
CONNECTION: ContextVar[str | None] = ContextVar("CONNECTION", default=None)
LAST_MESSAGE: ContextVar[str | None] = ContextVar("LAST_MESSAGE", default=None)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    token = parse_qs(scope["query_string"].decode()).get("token", [""])[0]
    if scope["type"] == "http":
        at_start = REQUEST.get()
        REQUEST.set(token)
        await receive()
        await asyncio.sleep(0)
        body = json.dumps({"at_start": at_start, "after_await": REQUEST.get()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    at_start = {"connection": CONNECTION.get(), "last_message": LAST_MESSAGE.get()}
    CONNECTION.set(token)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(at_start)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        seen = {"connection": CONNECTION.get(), "last_message": LAST_MESSAGE.get()}
        LAST_MESSAGE.set(message["text"])
        await send({"type": "websocket.send", "text": json.dumps(seen)})
