"""A Strawberry schema with operations of known length, for drain and leak tests.

Every subscription records ``<name> start <tag>`` when it begins and ``<name> finally <tag>``
in its ``finally`` block, so a test can prove the resolver was closed, whichever way the
operation ended (completed, stopped by the client, client gone, server draining).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from lifecycle_events import record
from strawberry.extensions import ParserCache, ValidationCache


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"

    @strawberry.field
    async def slow(self, seconds: float) -> str:
        """A query that is still running when the drain begins."""
        record("slow query running", announce=True)
        await asyncio.sleep(seconds)
        return f"slept {seconds}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def slow_echo(self, text: str, seconds: float) -> str:
        """A mutation that is still running when the drain begins."""
        record("slow mutation running", announce=True)
        await asyncio.sleep(seconds)
        return text


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, n: int, interval: float = 0.1, tag: str = "") -> AsyncGenerator[int, None]:
        """Yield 0..n-1, ``interval`` seconds apart, then complete."""
        record(f"count start {tag}")
        try:
            for i in range(n):
                if i:
                    await asyncio.sleep(interval)
                yield i
        finally:
            record(f"count finally {tag}")

    @strawberry.subscription
    async def forever(self, interval: float = 0.1, tag: str = "") -> AsyncGenerator[int, None]:
        """Yield 0, 1, 2, ... until the client or the server ends it."""
        record(f"forever start {tag}")
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(interval)
        finally:
            record(f"forever finally {tag}")


# The caches a production schema would use: the leak tests repeat a few documents a
# thousand times, and without them graphql-core re-parses and re-validates each one.
schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[ParserCache(maxsize=64), ValidationCache(maxsize=64)],
)
