"""The Channels consumers of the idle, subscribed and connect-storm workloads."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "scale-idle"
#: What ``/ws/subscribed`` sends after it accepts: this many messages of MESSAGE_SIZE bytes.
MESSAGES = 3
MESSAGE_SIZE = 200


def update(seq: int) -> str:
    """A JSON message of exactly :data:`MESSAGE_SIZE` bytes, like a live page's update."""
    body = {"type": "update", "seq": seq, "room": "lobby", "user": {"id": 1000 + seq, "name": "member"}, "text": ""}
    pad = MESSAGE_SIZE - len(json.dumps(body, separators=(",", ":")))
    body["text"] = ("the quick brown fox jumps over the lazy dog " * 5)[:pad]
    return json.dumps(body, separators=(",", ":"))


UPDATES = [update(seq) for seq in range(1, MESSAGES + 1)]


class IdleConsumer(AsyncWebsocketConsumer):
    """Joins :data:`GROUP`, accepts, then waits (the group is never sent to)."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)


class SubscribedConsumer(IdleConsumer):
    """:class:`IdleConsumer` that sends :data:`UPDATES` right after it accepts."""

    async def connect(self) -> None:
        await super().connect()
        for text in UPDATES:
            await self.send(text_data=text)
