"""The consumers of the Channels workloads, all ``AsyncWebsocketConsumer``.

- :class:`EchoConsumer` (``/ws/echo``, the ``ch-echo`` and ``ch-connect`` workloads):
  accepts in ``connect`` (the base class does), sends every message back.
- :class:`FanoutConsumer` (``/ws/fanout/<layer>/<role>``, ``ch-fanout-mem`` and
  ``ch-fanout-redis``): a ``subscriber`` joins :data:`GROUP` on connect and leaves it on
  disconnect; a ``trigger``'s every message is ``group_send`` to the group; each subscriber
  sends the text of the group message to its peer. ``layer`` is the channel layer alias
  (``default``: in memory; ``redis``: Redis pub/sub).
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "bench-fanout"


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class FanoutConsumer(AsyncWebsocketConsumer):
    """``channel_layer_alias`` comes from the URL, so it is set before the base class's
    ``__call__`` looks the layer up."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.channel_layer_alias = scope["url_route"]["kwargs"]["layer"]
        self.subscriber = scope["url_route"]["kwargs"]["role"] == "subscriber"
        await super().__call__(scope, receive, send)

    async def connect(self) -> None:
        if self.subscriber:
            await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.subscriber:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(GROUP, {"type": "fanout.message", "text": text_data})

    async def fanout_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])
