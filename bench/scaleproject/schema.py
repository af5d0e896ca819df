"""The GraphQL schema of the fan-out workload: ``feed(topic)`` and ``publish``."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from channels.layers import get_channel_layer

#: The channel-layer message type of an event (dispatched to ``listen_to_channel``).
EVENT = "scale.event"


def group(topic: str) -> str:
    return f"scale-feed-{topic}"


@strawberry.type
class Event:
    seq: int
    text: str


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Send an event to every subscriber of `topic`.")
    async def publish(self, topic: str, seq: int, text: str) -> int:
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(group(topic), {"type": EVENT, "seq": seq, "text": text})
        return seq


@strawberry.type
class Subscription:
    @strawberry.subscription(description="`seq 0` once subscribed, then every event published to `topic`.")
    async def feed(self, info: strawberry.Info, topic: str) -> AsyncGenerator[Event, None]:
        consumer = info.context["ws"]
        async with consumer.listen_to_channel(EVENT, groups=[group(topic)]) as events:
            yield Event(seq=0, text="subscribed")
            async for event in events:
                yield Event(seq=event["seq"], text=event["text"])


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
