"""``ChatConsumer``: a Channels ``AsyncWebsocketConsumer`` chatting through a layer group.

``/ws/chat/<group>/``: on connect it joins ``<group>`` (``group_add``), accepts, and sends
``{"type": "joined", "channel": <its channel name>}``, so a client knows its membership is
in place. Each text frame is ``group_send`` to the group; every member forwards each group
message to its client as ``{"type": "message", "text": ..., "sender": ...}`` and logs
``chat.message <text> to <channel>``. On disconnect it leaves (``group_discard``) and logs
``discarded <channel> from <group>`` once that returned.

``SayConsumer``: ``POST /chat/<group>/say/`` with a text body, an ``AsyncHttpConsumer``
(which, like every Channels consumer, opens a channel of its own first) that
``group_send``-s the body to the group as the server itself, and answers ``sent``.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.group = self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=json.dumps({"type": "joined", "channel": self.channel_name}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        event = {"type": "chat.message", "text": text_data, "sender": self.channel_name}
        await self.channel_layer.group_send(self.group, event)

    async def chat_message(self, event: dict[str, Any]) -> None:
        print(f"chat.message {event['text']} to {self.channel_name}", flush=True)
        message = {"type": "message", "text": event["text"], "sender": event["sender"]}
        await self.send(text_data=json.dumps(message))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)
        print(f"discarded {self.channel_name} from {self.group}", flush=True)


class SayConsumer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        group = self.scope["url_route"]["kwargs"]["group"]
        event = {"type": "chat.message", "text": body.decode(), "sender": "http"}
        await self.channel_layer.group_send(group, event)
        await self.send_response(200, b"sent", headers=[(b"content-type", b"text/plain")])
