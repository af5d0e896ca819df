"""The ASGI application the lifecycle tests serve.

HTTP (plain ASGI, so the tests control exactly what runs):

- ``/slow?seconds=S``: answers 200 after ``S`` seconds; records ``slow start`` first.
- ``/tasks``: ``{"tasks": len(asyncio.all_tasks())}``, the leak tests' task gauge.
- ``/objects``: after a ``gc.collect()``, the number of objects the collector tracks and
  the most common types: what a failing leak test is read with.
- ``/sse``: an event stream that sends one event and then waits for the next one forever,
  never calling ``receive()``, so only the server's cancellation can end it.

WebSocket:

- ``/ws/idle/``: a Channels consumer that joins a group on connect, and on disconnect
  leaves it and records ``disconnect <code>``: the shutdown test counts these.
- ``/ws/stubborn/``: plain ASGI; accepts, then ignores ``websocket.disconnect`` and never
  returns.
- ``/ws/stuck/``: a Channels consumer whose ``disconnect()`` never returns.
- ``/ws/accept-on-drain/``: plain ASGI; answers its handshake only once the server's drain
  has begun (``channelserver.drain``'s ``started``), then records what it receives.
- ``/graphql``: ``channelserver.strawberry.GraphQLWSConsumer`` (drain-aware).
- ``/graphql-stock``: Strawberry's own consumer, for comparison.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections import Counter
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lifecycle_settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from lifecycle_events import record  # noqa: E402
from lifecycle_schema import schema  # noqa: E402
from strawberry.channels import GraphQLWSConsumer as StockGraphQLWSConsumer  # noqa: E402

from channelserver.strawberry import GraphQLWSConsumer  # noqa: E402

Scope = dict[str, Any]


class IdleConsumer(AsyncWebsocketConsumer):
    """An idle chat-style client: in a group, waiting for broadcasts."""

    groups = ["lobby"]

    async def connect(self) -> None:
        record("connect")
        await super().connect()

    async def disconnect(self, code: int) -> None:
        # Channels leaves ``groups`` itself after this returns; record that we were told.
        record(f"disconnect {code}")


class StuckConsumer(AsyncWebsocketConsumer):
    """A consumer whose disconnect handler hangs, as one awaiting a dead backend would."""

    async def disconnect(self, code: int) -> None:
        record("stuck got disconnect", announce=True)
        await asyncio.Event().wait()


async def stubborn_websocket(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts, then ignores ``websocket.disconnect`` and never returns."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record("stubborn got disconnect", announce=True)
            await asyncio.Event().wait()  # and never return


async def accept_on_drain(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts once the drain began: a handshake in flight when the server drains."""
    await receive()  # websocket.connect
    record("handshake in flight", announce=True)
    await scope["extensions"]["channelserver.drain"]["started"].wait()
    await send({"type": "websocket.accept"})
    message = await receive()
    record(f"accept-on-drain got {message['type']} {message.get('code')}", announce=True)


async def _respond(send: Any, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def http_app(scope: Scope, receive: Any, send: Any) -> None:
    route = scope["path"]
    if route == "/tasks":
        await _respond(send, 200, json.dumps({"tasks": len(asyncio.all_tasks())}).encode())
    elif route == "/objects":
        gc.collect()
        kinds = Counter(type(obj).__qualname__ for obj in gc.get_objects())
        body = {"objects": sum(kinds.values()), "top": kinds.most_common(15)}
        await _respond(send, 200, json.dumps(body).encode())
    elif route == "/slow":
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        seconds = float(query.get("seconds", "2"))
        record("slow start", announce=True)
        await asyncio.sleep(seconds)
        await _respond(send, 200, f"slept {seconds}\n".encode(), b"text/plain")
    elif route == "/sse":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
        record("sse streaming", announce=True)
        next_event: asyncio.Queue[bytes] = asyncio.Queue()
        while True:
            data = await next_event.get()  # nothing is ever published
            await send({"type": "http.response.body", "body": data, "more_body": True})
    else:
        await _respond(send, 404, b'{"error": "not found"}')


async def lifespan_app(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            record("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "lifespan": lifespan_app,
        "websocket": URLRouter(
            [
                path("ws/idle/", IdleConsumer.as_asgi()),
                path("ws/stubborn/", stubborn_websocket),
                path("ws/stuck/", StuckConsumer.as_asgi()),
                path("ws/accept-on-drain/", accept_on_drain),
                path("graphql", GraphQLWSConsumer.as_asgi(schema=schema)),
                path("graphql-stock", StockGraphQLWSConsumer.as_asgi(schema=schema)),
            ]
        ),
    }
)
