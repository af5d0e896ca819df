"""A Strawberry schema whose subscription is fed through the channel layer.

- ``mutation { say(room, text) }``: ``group_send`` of ``{"type": "room.message", "text"}``
  to the room's group, from whichever consumer runs the mutation (HTTP or WebSocket);
- ``subscription { room(room, until) }``: joins the room's group with the consumer's
  ``listen_to_channel`` (Strawberry's documented way), yields ``"joined"`` once the
  membership is in place, then each text said in the room; it ends after ``until``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from channels.layers import get_channel_layer
from strawberry.types import Info


def group_of(room: str) -> str:
    return f"room.{room}"


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def say(self, room: str, text: str) -> str:
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(group_of(room), {"type": "room.message", "text": text})
        return text


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def room(self, info: Info, room: str, until: str) -> AsyncGenerator[str, None]:
        consumer = info.context["ws"]
        async with consumer.listen_to_channel("room.message", groups=[group_of(room)]) as messages:
            yield "joined"
            async for message in messages:
                yield message["text"]
                if message["text"] == until:
                    return


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
