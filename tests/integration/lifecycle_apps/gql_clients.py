"""Small GraphQL-over-WebSocket clients for the lifecycle tests, on the ``websockets`` package.

One class speaks both protocols a Strawberry server offers:

- ``graphql-transport-ws`` (the ``graphql-ws`` npm library's protocol): ``connection_init``
  / ``connection_ack``, ``subscribe``, ``next``, ``error``, ``complete`` both ways, ``ping``;
- ``graphql-ws`` (the legacy subscriptions-transport-ws protocol): ``connection_init`` /
  ``connection_ack``, ``start``, ``data``, ``error``, ``complete``, ``stop``, ``ka``.

Messages are normalised to the transport-ws names (``data`` becomes ``next``) so a test can
run once per protocol with the same assertions. The client keeps everything it received,
and how the connection closed (code and reason of the server's close frame).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = ["PROTOCOLS", "Closed", "GraphQLWSClient"]

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)


class Closed(Exception):
    """The server closed the connection while the client waited for a message."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class GraphQLWSClient:
    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls, url: str, protocol: str = TRANSPORT_WS, *, init: bool = True, **kwargs: Any
    ) -> GraphQLWSClient:
        """Open the WebSocket with ``protocol`` and, if ``init``, complete ``connection_init``."""
        ws = await connect(url, subprotocols=[protocol], ping_interval=None, open_timeout=10, **kwargs)  # type: ignore[list-item]
        if ws.subprotocol != protocol:
            await ws.close()
            raise AssertionError(f"server chose subprotocol {ws.subprotocol!r}, not {protocol!r}")
        client = cls(ws, protocol)
        if init:
            await client.send({"type": "connection_init", "payload": {}})
            ack = await client.receive()
            if ack["type"] != "connection_ack":
                raise AssertionError(f"expected connection_ack, got {ack}")
        return client

    # -- sending ---------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"type": kind, "id": op_id, "payload": payload})

    async def stop(self, op_id: str) -> None:
        """The client ends one operation (``complete`` / ``stop``)."""
        await self.send({"type": "complete" if self.protocol == TRANSPORT_WS else "stop", "id": op_id})

    # -- receiving -------------------------------------------------------------------------
    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next protocol message, normalised; keep-alives are skipped. Raises Closed."""
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), timeout)
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
            message = json.loads(raw)
            if message.get("type") == "ka":
                continue
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            if message.get("type") == "data":
                message["type"] = "next"
            self.received.append(message)
            return message

    async def until_done(self, op_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Messages for ``op_id`` up to and including its ``complete`` or ``error``."""
        messages = []
        while True:
            message = await self.receive(timeout)
            if message.get("id") != op_id:
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages

    async def until_closed(self, timeout: float = 10.0) -> tuple[list[dict[str, Any]], int | None, str]:
        """Everything received until the server closes: (messages, close code, reason)."""
        messages = []
        while True:
            try:
                messages.append(await self.receive(timeout))
            except Closed as closed:
                return messages, closed.code, closed.reason

    async def close(self) -> None:
        await self.ws.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, as a vanished client does."""
        transport = self.ws.transport
        transport.abort()


def values(messages: list[dict[str, Any]], field: str) -> list[Any]:
    """The ``data[field]`` of each ``next`` message, in order."""
    return [m["payload"]["data"][field] for m in messages if m["type"] == "next"]
