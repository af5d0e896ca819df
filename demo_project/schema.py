"""The demo's GraphQL schema: chat rooms, a countdown and a server clock.

- ``Query``: ``rooms``, ``messages(room, limit)`` (recent messages, async ORM), ``stats`` and
  ``awaitStats`` (subscription counters, see :mod:`demo_project.stats`).
- ``Mutation.postMessage``: validates, saves, then broadcasts the saved row to the room's
  channel-layer group. Invalid input is a GraphQL error (``errors`` in the result), never a
  500 or a database error.
- ``Subscription``: ``messages(room, recent)`` (endless, fed by the channel-layer group;
  ``recent`` replays the last messages after joining the group, so none is missed),
  ``countdown(from, intervalMs)`` (finite: yields ``from`` .. 1, then completes) and
  ``serverTime(intervalMs)`` (endless ticker).

Every subscription resolver is an async generator with a ``finally`` that records its end in
:data:`~demo_project.stats.STATS`: that ``finally`` is where a real application releases what
the subscription held (group membership, a database cursor, a lock), and the counters let the
tests prove it runs when a client sends ``complete``, disconnects abruptly, or drops an HTTP
stream.

``messages`` listens on a channel of its own (``channel_layer.new_channel()``) rather than
through the consumer's ``listen_to_channel``: that way the same resolver works over WebSocket
and over HTTP streams (multipart, SSE), where the Channels HTTP consumer is busy inside
``handle()`` and never dispatches channel-layer messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from channels.layers import BaseChannelLayer, get_channel_layer
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from demo_project.models import MAX_AUTHOR_LENGTH, MAX_TEXT_LENGTH, Message, Room
from demo_project.stats import STATS, Snapshot

#: The channel-layer message type a room's group carries.
CHAT_EVENT = "chat.message"
#: Bounds of the subscription arguments, so one client cannot ask for absurd work.
MAX_COUNTDOWN = 10_000
MAX_INTERVAL_MS = 60_000
MAX_RECENT = 200


class DemoError(Exception):
    """An error the client caused; its message becomes the GraphQL error's message."""


@strawberry.type
class RoomType:
    """A chat room; ``slug`` is what the other fields and the mutation take as ``room``."""

    slug: str
    title: str

    @classmethod
    def from_model(cls, room: Room) -> RoomType:
        return cls(slug=room.slug, title=room.title)


@strawberry.type
class ChatMessage:
    """One saved message, as read from the database or received from the room's group."""

    id: strawberry.ID
    room: str
    author: str
    text: str
    created_at: dt.datetime

    @classmethod
    def from_model(cls, message: Message, room_slug: str) -> ChatMessage:
        return cls(
            id=strawberry.ID(str(message.pk)),
            room=room_slug,
            author=message.author,
            text=message.text,
            created_at=message.created_at,
        )

    def to_event(self) -> dict[str, Any]:
        """The channel-layer message (msgpack-serialisable for channels_redis: no datetime)."""
        return {
            "type": CHAT_EVENT,
            "id": str(self.id),
            "room": self.room,
            "author": self.author,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ChatMessage:
        return cls(
            id=strawberry.ID(event["id"]),
            room=event["room"],
            author=event["author"],
            text=event["text"],
            created_at=dt.datetime.fromisoformat(event["created_at"]),
        )


@strawberry.type
class FieldStats:
    """Counts for one subscription field."""

    field: str
    active: int
    finished: int


@strawberry.type
class Stats:
    """Subscription counters of the process that answered (``pid``)."""

    pid: int
    active_subscriptions: int
    finished_subscriptions: int
    by_field: list[FieldStats]

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> Stats:
        fields = sorted(set(snap.active) | set(snap.finished))
        return cls(
            pid=snap.pid,
            active_subscriptions=snap.active_total(),
            finished_subscriptions=snap.finished_total(),
            by_field=[
                FieldStats(field=f, active=snap.active.get(f, 0), finished=snap.finished.get(f, 0)) for f in fields
            ],
        )


@strawberry.input
class StatsCondition:
    """What ``awaitStats`` waits for; every bound given must hold (``field`` narrows them)."""

    field: str | None = None
    active_at_least: int | None = None
    active_at_most: int | None = None
    finished_at_least: int | None = None

    def holds(self, snap: Snapshot) -> bool:
        active = snap.active_total(self.field)
        finished = snap.finished_total(self.field)
        return (
            (self.active_at_least is None or active >= self.active_at_least)
            and (self.active_at_most is None or active <= self.active_at_most)
            and (self.finished_at_least is None or finished >= self.finished_at_least)
        )


async def get_room(slug: str) -> Room:
    try:
        return await Room.objects.aget(slug=slug)
    except Room.DoesNotExist:
        raise DemoError(f"No room {slug!r}.") from None


def require_layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    if layer is None:
        raise DemoError("No channel layer is configured (settings.CHANNEL_LAYERS).")
    return layer


def check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise DemoError(f"{name} must be between {low} and {high}, got {value}.")


async def recent_messages(room: Room, limit: int) -> list[ChatMessage]:
    latest = Message.objects.filter(room=room).order_by("-created_at", "-id")[:limit]
    rows = [message async for message in latest]
    return [ChatMessage.from_model(message, room.slug) for message in reversed(rows)]


@strawberry.type
class Query:
    @strawberry.field(description="All rooms, by slug.")
    async def rooms(self) -> list[RoomType]:
        return [RoomType.from_model(room) async for room in Room.objects.all()]

    @strawberry.field(description="The most recent messages of a room, oldest first.")
    async def messages(self, room: str, limit: int = 50) -> list[ChatMessage]:
        check_range("limit", limit, 1, MAX_RECENT)
        return await recent_messages(await get_room(room), limit)

    @strawberry.field(description="Subscription counters of this process.")
    def stats(self) -> Stats:
        return Stats.from_snapshot(STATS.snapshot())

    @strawberry.field(description="Wait until the counters satisfy `until` (an error after `timeoutMs`).")
    async def await_stats(self, until: StatsCondition, timeout_ms: int = 2000) -> Stats:
        check_range("timeoutMs", timeout_ms, 0, MAX_INTERVAL_MS)
        try:
            snap = await STATS.wait_until(until.holds, timeout_ms / 1000)
        except TimeoutError:
            raise DemoError(f"Stats did not satisfy {until} within {timeout_ms} ms: {STATS.snapshot()}") from None
        return Stats.from_snapshot(snap)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Save a message in a room and broadcast it to the room's subscribers.")
    async def post_message(self, room: str, text: str, author: str = "anonymous") -> ChatMessage:
        text = text.strip()
        author = author.strip() or "anonymous"
        if not text:
            raise DemoError("Message text must not be empty.")
        if len(text) > MAX_TEXT_LENGTH:
            raise DemoError(f"Message text is limited to {MAX_TEXT_LENGTH} characters, got {len(text)}.")
        if len(author) > MAX_AUTHOR_LENGTH:
            raise DemoError(f"Author name is limited to {MAX_AUTHOR_LENGTH} characters, got {len(author)}.")
        layer = require_layer()
        found = await get_room(room)
        saved = await Message.objects.acreate(room=found, author=author, text=text)
        message = ChatMessage.from_model(saved, found.slug)
        await layer.group_send(found.group_name, message.to_event())
        return message


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Messages posted in a room from now on (endless). With `recent`, the last `recent` "
            "messages come first, read after joining the room's group: none posted meanwhile "
            "is missed (a client dedupes by id)."
        )
    )
    async def messages(self, room: str, recent: int = 0) -> AsyncGenerator[ChatMessage, None]:
        check_range("recent", recent, 0, MAX_RECENT)
        layer = require_layer()
        found = await get_room(room)
        channel = await layer.new_channel()
        await layer.group_add(found.group_name, channel)
        STATS.started("messages")
        try:
            if recent:
                for message in await recent_messages(found, recent):
                    yield message
            while True:
                event = await layer.receive(channel)
                if event.get("type") == CHAT_EVENT:
                    yield ChatMessage.from_event(event)
        finally:
            # Leave the group even when the layer is unwell: the count must still be recorded.
            with contextlib.suppress(Exception):
                await layer.group_discard(found.group_name, channel)
            STATS.finished("messages")

    @strawberry.subscription(description="Counts down from `from` to 1, one number per interval, then completes.")
    async def countdown(
        self,
        from_: Annotated[int, strawberry.argument(name="from")],
        interval_ms: int = 1000,
    ) -> AsyncGenerator[int, None]:
        check_range("from", from_, 0, MAX_COUNTDOWN)
        check_range("intervalMs", interval_ms, 0, MAX_INTERVAL_MS)
        STATS.started("countdown")
        try:
            for n in range(from_, 0, -1):
                yield n
                if n > 1:
                    await asyncio.sleep(interval_ms / 1000)
        finally:
            STATS.finished("countdown")

    @strawberry.subscription(description="The server's clock (UTC), once per interval (endless).")
    async def server_time(self, interval_ms: int = 1000) -> AsyncGenerator[dt.datetime, None]:
        check_range("intervalMs", interval_ms, 10, MAX_INTERVAL_MS)
        STATS.started("serverTime")
        try:
            while True:
                yield dt.datetime.now(dt.timezone.utc)
                await asyncio.sleep(interval_ms / 1000)
        finally:
            STATS.finished("serverTime")


class DemoSchema(strawberry.Schema):
    """The schema, logging only the errors that are the server's fault.

    Strawberry logs every error of a result with its traceback; a client's empty message or
    unknown room (a :class:`DemoError`) is an answer, not an incident, so it is not logged.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        unexpected = [error for error in errors if not isinstance(error.original_error, DemoError)]
        super().process_errors(unexpected, execution_context)


schema = DemoSchema(query=Query, mutation=Mutation, subscription=Subscription)
