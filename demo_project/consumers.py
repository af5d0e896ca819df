"""Consumers of the demo besides Strawberry's WebSocket one (chosen in asgi.py)."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from strawberry.channels import GraphQLHTTPConsumer as StrawberryHTTPConsumer


class GraphQLHTTPConsumer(StrawberryHTTPConsumer):
    """Strawberry's HTTP consumer without a channel of its own.

    A Channels consumer normally opens a channel-layer channel for every instance and keeps
    a ``receive()`` on it pending: for HTTP that is one channel per request, and with
    channels_redis a blocking read on Redis that the request has to wait out (up to five
    seconds) when it ends. The schema never uses the consumer's channel (``postMessage``
    calls ``get_channel_layer()``, ``messages`` opens a channel of its own), so the HTTP
    consumer goes without.
    """

    channel_layer_alias = None  # type: ignore[assignment]


class EchoConsumer(AsyncWebsocketConsumer):
    """Echo every text or binary frame: a plain Channels consumer next to the GraphQL ones."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)
