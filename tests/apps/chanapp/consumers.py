"""The consumers. ``token`` (query string) names what each records.

- :class:`StreamConsumer` (HTTP): streams chunks forever without reading; only an
  exception from ``send()`` can stop it once the client left. It records how it stopped
  and that ``disconnect()`` ran.
- :class:`BackgroundConsumer` (WebSocket): accepts from a task spawned in ``connect()``
  and answers each message from a task spawned per message, as GraphQL subscription
  consumers do; the dispatch loop is back in ``receive()`` before the accept.
- :class:`FloodConsumer` (WebSocket): on ``flood`` it sends 40 messages 10 ms apart; the
  client leaves after the first, so most sends happen after it is gone.

Both WebSocket consumers join the group ``g<token>``; Channels discards it in
``websocket_disconnect``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from recorder import record


def token_of(scope: dict[str, Any]) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [""])[0]


class StreamConsumer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        token = token_of(self.scope)
        await self.send_headers(headers=[(b"content-type", b"text/plain")])
        try:
            while True:
                await self.send_body(b"y" * 1024, more_body=True)
                await asyncio.sleep(0.005)
        except BaseException as exc:
            record(f"{token}:stopped", {"type": type(exc).__name__, "oserror": isinstance(exc, OSError)})
            raise

    async def disconnect(self) -> None:
        record(f"{token_of(self.scope)}:disconnect")


class CountingConsumer(AsyncWebsocketConsumer):
    """Records connects, disconnects and what the consumer's tasks did."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.token = token_of(self.scope)
        self.groups = [f"g{self.token}"]
        self.tasks: set[asyncio.Task[None]] = set()
        record(f"{self.token}:websocket_connect")
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        record(f"{self.token}:websocket_disconnect", message)
        await super().websocket_disconnect(message)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class BackgroundConsumer(CountingConsumer):
    async def connect(self) -> None:
        self.spawn(self.accept_later())

    async def accept_later(self) -> None:
        await asyncio.sleep(0.05)
        await self.accept()
        record(f"{self.token}:accepted")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        record(f"{self.token}:receive", text_data)
        self.spawn(self.reply(text_data or ""))

    async def reply(self, text: str) -> None:
        await self.send(text_data="echo:" + text)


class FloodConsumer(CountingConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            for i in range(40):
                await self.send(text_data=f"flood {i}")
                await asyncio.sleep(0.01)
        except BaseException as exc:
            record(f"{self.token}:flood", {"type": type(exc).__name__})
            raise
        record(f"{self.token}:flood", "done")
