"""A third-party GraphQL client, gql, against the demo on channelserver and Daphne.

gql's ``WebsocketsTransport`` speaks both WebSocket protocols (its "graphql-ws" is the
legacy Apollo one, its "graphql-transport-ws" the newer one); pinning the subprotocol runs
each. Its HTTPX transport sends the queries and mutations. The scenarios: a finite
subscription ends by itself, breaking out of an endless one stops the server-side
generator, and a mutation reaches a subscriber.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.servers import ServerProcess

from .clients import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, await_counts, counts
from .conftest import run

try:
    from gql import Client, gql
    from gql.transport.httpx import HTTPXAsyncTransport
    from gql.transport.websockets import WebsocketsTransport
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("gql is not installed (pip install 'gql[websockets,httpx]')", allow_module_level=True)

pytestmark = pytest.mark.parity


def ws_client(server: ServerProcess, protocol: str) -> Client:
    transport = WebsocketsTransport(
        url=f"{server.ws_url}/graphql/",
        subprotocols=[protocol],
        connect_args={"origin": server.url},
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


def http_client(server: ServerProcess) -> Client:
    return Client(transport=HTTPXAsyncTransport(url=f"{server.url}/graphql/"), fetch_schema_from_transport=False)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gql_subscriptions_finite_endless_and_broadcast(demo_server: ServerProcess, protocol: str) -> None:
    assert {TRANSPORT_WS, LEGACY_WS} == set(PROTOCOLS)

    async def scenario() -> None:
        ticks = await counts(demo_server.url, "serverTime")
        async with ws_client(demo_server, protocol) as session:
            # Finite: the iteration ends when the server completes.
            values = [
                r["countdown"]
                async for r in session.subscribe(gql("subscription { countdown(from: 3, intervalMs: 5) }"))
            ]
            assert values == [3, 2, 1]
            # Endless: leaving the loop makes gql stop the operation; the server's finally runs.
            seen = 0
            async for _ in session.subscribe(gql("subscription { serverTime(intervalMs: 20) }")):
                seen += 1
                if seen == 2:
                    break
            await await_counts(
                demo_server.url, "serverTime", finished_at_least=ticks.finished + 1, active_at_most=ticks.active
            )
            # Broadcast: a mutation over HTTP reaches this subscription.
            chats = await counts(demo_server.url, "messages")
            live = session.subscribe(gql('subscription { messages(room: "lobby") { text author } }'))
            first: asyncio.Future[Any] = asyncio.ensure_future(live.__anext__())
            await await_counts(demo_server.url, "messages", active_at_least=chats.active + 1)
            async with http_client(demo_server) as http:
                await http.execute(
                    gql('mutation { postMessage(room: "lobby", text: "from gql", author: "gql") { id } }')
                )
            assert (await asyncio.wait_for(first, 5))["messages"] == {"text": "from gql", "author": "gql"}
            await live.aclose()  # type: ignore[attr-defined]

    run(scenario())
