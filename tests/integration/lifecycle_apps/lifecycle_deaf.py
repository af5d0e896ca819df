"""Apps that catch ``CancelledError`` and go on awaiting: cancelling them does not end them.

The server must still exit: after ``app_close_timeout`` it cancels them, and one still
running ``CANCEL_GRACE`` later is abandoned with a WARNING line naming it.

- ``/deaf``: HTTP; waits forever, swallowing every cancellation.
- ``/orphan``: HTTP; answers 200 at once but leaves a background task behind that swallows
  its cancellation (the server's last clean-up of the loop meets it).
- ``/blocked``: HTTP; a sync function stuck in ``sync_to_async`` (a thread nothing can
  cancel), as a sync Django view waiting on a dead backend would be.
- ``/ws/deaf/``: a Channels consumer whose ``disconnect()`` swallows its cancellation.
- lifespan: with ``DEAF_LIFESPAN=1`` in the environment the shutdown is never answered and
  its cancellation is swallowed; otherwise it answers at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lifecycle_settings")
django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from lifecycle_events import record  # noqa: E402

_orphans: set[asyncio.Task[None]] = set()


async def swallow_cancellation(what: str) -> None:
    """Await forever; each cancellation is recorded and ignored."""
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            record(f"{what} cancelled", announce=True)


class DeafConsumer(AsyncWebsocketConsumer):
    async def disconnect(self, code: int) -> None:
        record("deaf consumer got disconnect", announce=True)
        await swallow_cancellation("deaf consumer")


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/deaf":
        record("deaf request", announce=True)
        await swallow_cancellation("deaf request")
    elif scope["path"] == "/blocked":
        record("blocked request", announce=True)
        await sync_to_async(time.sleep)(3600)
    elif scope["path"] == "/orphan":
        task = asyncio.get_running_loop().create_task(swallow_cancellation("orphan task"))
        _orphans.add(task)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ok\n"})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body"})


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if os.environ.get("DEAF_LIFESPAN") == "1":
                record("deaf lifespan shutdown", announce=True)
                await swallow_cancellation("deaf lifespan")
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "lifespan": lifespan_app,
        "websocket": URLRouter([path("ws/deaf/", DeafConsumer.as_asgi())]),
    }
)
