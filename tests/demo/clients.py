"""GraphQL clients for the demo tests, written against the protocol texts, over real sockets.

- :class:`GraphQLWebSocket`: one WebSocket connection speaking graphql-transport-ws
  (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) or the legacy
  graphql-ws of subscriptions-transport-ws
  (https://github.com/apollographql/subscriptions-transport-ws/blob/master/PROTOCOL.md), on
  the ``websockets`` package. Each operation's messages are kept as they came, normalised to
  ``("next", payload)``, ``("error", payload)`` and ``("complete", None)``, so tests can
  assert the exact sequence ("N items, then complete").
- :func:`query`: a GraphQL request over HTTP (httpx), GET or POST.
- :class:`HTTPSubscription`: an HTTP subscription, either multipart
  (``Accept: multipart/mixed;subscriptionSpec=1.0``, the incremental-delivery-over-HTTP
  shape Apollo clients speak) or Server-Sent Events (``Accept: text/event-stream``,
  graphql-sse's "distinct connections" mode), streamed with httpx; closing it mid-stream
  closes the connection, as a browser tab going away does.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)

#: Client -> server message types, per protocol.
_SUBSCRIBE = {TRANSPORT_WS: "subscribe", LEGACY_WS: "start"}
_STOP = {TRANSPORT_WS: "complete", LEGACY_WS: "stop"}
#: Server -> client message types, normalised.
_INBOUND = {
    TRANSPORT_WS: {"next": "next", "error": "error", "complete": "complete"},
    LEGACY_WS: {"data": "next", "error": "error", "complete": "complete"},
}

Event = tuple[str, Any]


class ProtocolViolation(AssertionError):
    """The server sent something its protocol does not allow here."""


@dataclass
class Operation:
    """One operation on a :class:`GraphQLWebSocket`: what came for its id, in order."""

    id: str
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    seen: list[Event] = field(default_factory=list)

    async def next_event(self, timeout: float = 5.0) -> Event:
        event = await asyncio.wait_for(self.events.get(), timeout)
        self.seen.append(event)
        return event

    async def next_data(self, timeout: float = 5.0) -> Any:
        """The next ``next`` payload's data; fails on error or complete."""
        kind, payload = await self.next_event(timeout)
        if kind != "next":
            raise AssertionError(f"expected 'next' for operation {self.id}, got {kind!r}: {payload!r}")
        if payload.get("errors"):
            raise AssertionError(f"operation {self.id} returned errors: {payload['errors']!r}")
        return payload["data"]

    async def until_done(self, timeout: float = 5.0) -> list[Event]:
        """Every event up to and including ``complete`` or ``error``."""
        while True:
            kind, _ = await self.next_event(timeout)
            if kind in ("complete", "error"):
                return self.seen


class GraphQLWebSocket:
    """A GraphQL-over-WebSocket client connection (either protocol)."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.operations: dict[str, Operation] = {}
        self.other: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ids = 0
        self._reader: asyncio.Task[None] | None = None
        self.failure: Exception | None = None
        self.closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls,
        url: str,
        protocol: str,
        *,
        origin: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> GraphQLWebSocket:
        """Connect, send ``connection_init``, wait for ``connection_ack``."""
        if origin is None:
            parts = urlsplit(url)
            origin = f"http://{parts.netloc}"
        ws = await connect(
            url,
            subprotocols=[protocol],  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
            open_timeout=timeout,
            ping_interval=None,
            compression=None,
        )
        if ws.subprotocol != protocol:
            await ws.close()
            raise ProtocolViolation(f"server chose subprotocol {ws.subprotocol!r}, asked for {protocol!r}")
        client = cls(ws, protocol)
        await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if message["type"] == "connection_ack":
                break
            if message["type"] != "ka":  # the legacy protocol may send keep-alives first
                await ws.close()
                raise ProtocolViolation(f"expected connection_ack, got {message!r}")
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        inbound = _INBOUND[self.protocol]
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message.get("type")
                if self.protocol == TRANSPORT_WS and kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                if kind in inbound and "id" in message:
                    op = self.operations.get(message["id"])
                    if op is None:
                        raise ProtocolViolation(f"message for unknown operation: {message!r}")
                    op.events.put_nowait((inbound[kind], message.get("payload")))
                else:
                    self.other.put_nowait(message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a protocol violation: surfaced by close() / wait_closed()
            self.failure = exc
            await self.ws.close()
        finally:
            code = self.ws.close_code
            reason = self.ws.close_reason
            if not self.closed.done():
                self.closed.set_result((code, reason))

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Operation:
        """Start an operation (subscription, query or mutation)."""
        self._ids += 1
        op = Operation(id=str(self._ids))
        self.operations[op.id] = op
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.ws.send(json.dumps({"id": op.id, "type": _SUBSCRIBE[self.protocol], "payload": payload}))
        return op

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """A query or mutation: its single result payload (``data`` and maybe ``errors``)."""
        op = await self.subscribe(query, variables)
        events = await op.until_done()
        results = [payload for kind, payload in events if kind == "next"]
        assert [kind for kind, _ in events] == ["next", "complete"], events
        return results[0]  # type: ignore[no-any-return]

    async def stop(self, op: Operation) -> None:
        """Client-side complete (graphql-transport-ws) / stop (graphql-ws)."""
        await self.ws.send(json.dumps({"id": op.id, "type": _STOP[self.protocol]}))

    async def close(self) -> None:
        if self.protocol == LEGACY_WS and self.ws.state.name == "OPEN":
            await self.ws.send(json.dumps({"type": "connection_terminate"}))
        await self.ws.close()
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the TCP connection with no close frame and no FIN handshake (RST)."""
        sock = self.ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.ws.transport.abort()

    async def wait_closed(self) -> None:
        """Wait for the reader to stop; raise what it found wrong with the server's messages."""
        if self._reader is not None:
            await self._reader
        if self.failure is not None:
            raise self.failure

    async def __aenter__(self) -> GraphQLWebSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- HTTP --------------------------------------------------------------------------------------


def query(base_url: str, text: str, variables: dict[str, Any] | None = None, *, method: str = "POST") -> dict[str, Any]:
    """One GraphQL request over HTTP; the JSON result (``data`` and maybe ``errors``)."""
    url = f"{base_url}/graphql/"
    with httpx.Client(timeout=10.0) as client:
        if method == "GET":
            params = {"query": text}
            if variables is not None:
                params["variables"] = json.dumps(variables)
            response = client.get(url, params=params, headers={"accept": "application/json"})
        else:
            response = client.post(url, json={"query": text, "variables": variables or {}})
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()  # type: ignore[no-any-return]


def data(base_url: str, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Like :func:`query`, but fails on GraphQL errors and returns ``data``."""
    result = query(base_url, text, variables)
    assert not result.get("errors"), result
    return result["data"]  # type: ignore[no-any-return]


async def aquery(base_url: str, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`query` for async tests (POST), so the event loop keeps reading WebSockets meanwhile."""
    async with httpx.AsyncClient(timeout=15.0) as client:
        response = await client.post(f"{base_url}/graphql/", json={"query": text, "variables": variables or {}})
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()  # type: ignore[no-any-return]


async def adata(base_url: str, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`data` for async tests."""
    result = await aquery(base_url, text, variables)
    assert not result.get("errors"), result
    return result["data"]  # type: ignore[no-any-return]


# -- the demo's subscription counters ------------------------------------------------------------

STATS_FIELDS = "pid activeSubscriptions finishedSubscriptions byField { field active finished }"


@dataclass(frozen=True)
class Counts:
    """Active and finished resolvers of one subscription field, in one server process."""

    pid: int
    active: int
    finished: int


def _counts(stats: dict[str, Any], field_name: str) -> Counts:
    for row in stats["byField"]:
        if row["field"] == field_name:
            return Counts(stats["pid"], row["active"], row["finished"])
    return Counts(stats["pid"], 0, 0)


async def counts(base_url: str, field_name: str) -> Counts:
    result = await adata(base_url, f"{{ stats {{ {STATS_FIELDS} }} }}")
    return _counts(result["stats"], field_name)


async def await_counts(
    base_url: str,
    field_name: str,
    *,
    active_at_least: int | None = None,
    active_at_most: int | None = None,
    finished_at_least: int | None = None,
    timeout_ms: int = 2000,
) -> Counts:
    """Wait, inside the server (``awaitStats``: an event, no polling), until the counts hold.

    Fails with the server's own description of the counts when they do not within ``timeout_ms``.
    """
    condition = {
        "field": field_name,
        "activeAtLeast": active_at_least,
        "activeAtMost": active_at_most,
        "finishedAtLeast": finished_at_least,
    }
    result = await aquery(
        base_url,
        f"query Wait($until: StatsCondition!, $ms: Int!) {{ awaitStats(until: $until, timeoutMs: $ms) {{ {STATS_FIELDS} }} }}",
        {"until": condition, "ms": timeout_ms},
    )
    if result.get("errors"):
        raise AssertionError(result["errors"][0]["message"])
    return _counts(result["data"]["awaitStats"], field_name)


MULTIPART = "multipart"
SSE = "sse"
HTTP_STREAMS = (MULTIPART, SSE)
_ACCEPT = {MULTIPART: "multipart/mixed;subscriptionSpec=1.0, application/json", SSE: "text/event-stream"}


class HTTPSubscription:
    """A subscription over one HTTP request (httpx, streaming), parsed as it arrives.

    ``events()`` yields ``("next", payload)`` for each result and ``("complete", None)``
    at the end of the stream; heartbeats (an empty multipart part, an SSE comment) are
    skipped. ``close()`` drops the connection mid-stream, like a browser tab closing.
    """

    def __init__(self, base_url: str, kind: str, text: str, variables: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.url = f"{base_url}/graphql/"
        self.body = {"query": text, "variables": variables or {}}
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self.response: httpx.Response | None = None
        self._buffer = b""
        self._stream: AsyncGenerator[Event, None] | None = None

    async def start(self) -> HTTPSubscription:
        request = self.client.build_request("POST", self.url, json=self.body, headers={"accept": _ACCEPT[self.kind]})
        self.response = await self.client.send(request, stream=True)
        return self

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        assert self.response is not None
        return self.response.headers

    async def events(self, timeout: float = 5.0) -> AsyncGenerator[Event, None]:
        assert self.response is not None
        chunks = self.response.aiter_raw().__aiter__()
        while True:
            for event in self._parse():
                yield event
                if event[0] == "complete":
                    return
            try:
                self._buffer += await asyncio.wait_for(chunks.__anext__(), timeout)
            except StopAsyncIteration:
                raise AssertionError(f"{self.kind} stream ended without its final marker: {self._buffer!r}") from None

    async def next_event(self, timeout: float = 5.0) -> Event:
        """The next event, keeping the stream open (unlike breaking out of ``events()``,
        whose generator, once dropped, closes the response)."""
        if self._stream is None:
            self._stream = self.events(timeout)
        return await self._stream.__anext__()

    def _parse(self) -> list[Event]:
        return self._parse_sse() if self.kind == SSE else self._parse_multipart()

    def _parse_sse(self) -> list[Event]:
        events: list[Event] = []
        while b"\r\n\r\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().split("\r\n"):
                if line.startswith(":"):
                    continue  # a comment: the heartbeat
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if fields.get("event") == "next":
                events.append(("next", json.loads(fields["data"])))
            elif fields.get("event") == "complete":
                events.append(("complete", None))
        return events

    def _parse_multipart(self) -> list[Event]:
        # Parts are separated by "\r\n--graphql"; the stream ends with "--graphql--".
        events: list[Event] = []
        delimiter = b"\r\n--graphql"
        while True:
            if self._buffer.startswith(b"--\r\n") or self._buffer.startswith(b"\r\n--graphql--"):
                events.append(("complete", None))
                self._buffer = b""
                return events
            end = self._buffer.find(delimiter, 1)
            if end < 0:
                return events
            part, self._buffer = self._buffer[:end], self._buffer[end + len(delimiter) :]
            if b"\r\n\r\n" not in part:
                continue  # the preamble or an empty part
            _, body = part.split(b"\r\n\r\n", 1)
            message = json.loads(body)
            if "payload" in message:
                events.append(("next", message["payload"]))

    async def close(self) -> None:
        """Go away: close the response (mid-stream, this closes the connection) and the client."""
        if self._stream is not None:
            await self._stream.aclose()
        if self.response is not None:
            await self.response.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> HTTPSubscription:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
