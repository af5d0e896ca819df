"""Strawberry subscriptions over both GraphQL WebSocket protocols, fed through
``RedisPubSubChannelLayer`` and a real redis-server, across two server processes.

``apps/ecoproj/schema.py``: a subscription joins its room's group with Strawberry's
``listen_to_channel``; a mutation ``group_send``-s to the room. The subscriber speaks
graphql-transport-ws or the legacy graphql-ws to one server (the client of
``tests/integration/lifecycle_apps/gql_clients.py``); the mutation is a GraphQL POST to
the other (Strawberry's HTTP consumer, whose channel is the first use of the layer in that
process). The subscriber gets each message, then ``complete`` when the resolver ends; a
second subscription is ended by the client, and is not sent what is said after that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apps.wire import token
from tests.demo.conftest import run
from tests.integration.lifecycle_apps.gql_clients import LEGACY_WS, PROTOCOLS, GraphQLWSClient, values
from tests.servers import ServerProcess

from .conftest import ECOPROJ, ECOPROJ_SETTINGS, serving

pytestmark = pytest.mark.ecosystem

ROOM = "subscription ($room: String!, $until: String!) { room(room: $room, until: $until) }"
SAY = "mutation ($room: String!, $text: String!) { say(room: $room, text: $text) }"


@pytest.fixture
def two_servers(redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"ECOSYSTEM_LAYER": "pubsub", "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": ECOPROJ_SETTINGS}
    with serving(ECOPROJ, env=env) as first, serving(ECOPROJ, env=env) as second:
        yield first, second


async def say(client: httpx.AsyncClient, server: ServerProcess, room: str, text: str) -> None:
    response = await client.post(
        f"{server.url}/graphql", json={"query": SAY, "variables": {"room": room, "text": text}}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"say": text}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscription_gets_what_a_mutation_on_another_server_says(
    protocol: str, two_servers: tuple[ServerProcess, ServerProcess]
) -> None:
    subscribed_to, mutated_on = two_servers
    room = token()

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        subscriber = await GraphQLWSClient.connect(f"{subscribed_to.ws_url}/graphql", protocol)
        async with httpx.AsyncClient(timeout=10) as http:
            await subscriber.subscribe("1", ROOM, {"room": room, "until": "bye"})
            assert values([await subscriber.receive()], "room") == ["joined"]
            for text in ("hello", "bye"):
                await say(http, mutated_on, room, text)
            finished = await subscriber.until_done("1")

            await subscriber.subscribe("2", ROOM, {"room": room, "until": "never"})
            assert values([await subscriber.receive()], "room") == ["joined"]
            await say(http, mutated_on, room, "once more")
            more = [await subscriber.receive()]
            await subscriber.stop("2")
            if protocol == LEGACY_WS:  # graphql-ws answers a stop with complete
                more += await subscriber.until_done("2")

            # the stopped one left the room: what is said next reaches only a new subscription
            await subscriber.subscribe("3", ROOM, {"room": room, "until": "third"})
            assert values([await subscriber.receive()], "room") == ["joined"]
            await say(http, mutated_on, room, "third")
            assert values(await subscriber.until_done("3"), "room") == ["third"]
        await subscriber.close()
        return finished, more, subscriber.received

    finished, more, received = run(scenario(), 20)
    assert values([m for m in received if m.get("id") == "2"], "room") == ["joined", "once more"]
    assert values(finished, "room") == ["hello", "bye"]
    assert finished[-1] == {"id": "1", "type": "complete"}
    assert values(more, "room") == ["once more"]
    if protocol == LEGACY_WS:
        assert more[-1] == {"id": "2", "type": "complete"}
