"""An app whose lifespan shutdown never answers: the server must not wait for it forever.

Startup completes; ``lifespan.shutdown`` is received (and recorded) but never answered, as
with a shutdown hook stuck on a dead database or broker. HTTP answers 200.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lifecycle_events import record


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                record("lifespan shutdown received", announce=True)
                await asyncio.Event().wait()  # never answers
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok\n"})
