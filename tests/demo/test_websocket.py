"""GraphQL over WebSocket, both protocols, against channelserver and Daphne serving the demo.

Real clients (tests/demo/clients.py) on real sockets to a real server subprocess. Cleanup
is proved with the demo's subscription counters: each resolver's ``finally`` counts itself
finished, and ``awaitStats`` waits for that inside the server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.servers import ServerProcess

from .clients import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, GraphQLWebSocket, adata, aquery, await_counts, counts
from .conftest import run

pytestmark = pytest.mark.parity

MESSAGE = "id room author text createdAt"
POST = f"""mutation Post($room: String!, $text: String!, $author: String!) {{
  postMessage(room: $room, text: $text, author: $author) {{ {MESSAGE} }} }}"""
LIVE = f"subscription Live($room: String!) {{ messages(room: $room) {{ {MESSAGE} }} }}"


def ws_url(server: ServerProcess) -> str:
    return f"{server.ws_url}/graphql/"


async def execute(
    server: ServerProcess, client: GraphQLWebSocket, text: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """A query or mutation over the client's WebSocket where the protocol allows it, else over HTTP.

    Strawberry's legacy graphql-ws handler runs subscriptions only (see
    :func:`test_legacy_graphql_ws_runs_subscriptions_only`); graphql-transport-ws runs all three.
    """
    if client.protocol == TRANSPORT_WS:
        return await client.execute(text, variables)
    return await aquery(server.url, text, variables)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_finite_subscription_gets_exactly_n_items_then_complete(demo_server: ServerProcess, protocol: str) -> None:
    async def scenario() -> None:
        before = await counts(demo_server.url, "countdown")
        async with await GraphQLWebSocket.open(ws_url(demo_server), protocol) as client:
            op = await client.subscribe("subscription { countdown(from: 5, intervalMs: 10) }")
            events = await op.until_done()
            assert events == [("next", {"data": {"countdown": n}}) for n in (5, 4, 3, 2, 1)] + [("complete", None)]
            after = await await_counts(demo_server.url, "countdown", finished_at_least=before.finished + 1)
            assert after.active == before.active
            # The connection stays usable after an operation completed.
            again = await client.subscribe("subscription { countdown(from: 2, intervalMs: 0) }")
            assert [kind for kind, _ in await again.until_done()] == ["next", "next", "complete"]

    run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_complete_stops_the_server_side_generator(demo_server: ServerProcess, protocol: str) -> None:
    async def scenario() -> None:
        before = await counts(demo_server.url, "serverTime")
        async with await GraphQLWebSocket.open(ws_url(demo_server), protocol) as client:
            op = await client.subscribe("subscription { serverTime(intervalMs: 20) }")
            first = await op.next_data()
            second = await op.next_data()
            assert first["serverTime"] < second["serverTime"]
            live = await await_counts(demo_server.url, "serverTime", active_at_least=before.active + 1)
            assert live.finished == before.finished
            await client.stop(op)  # graphql-transport-ws "complete" / graphql-ws "stop"
            # The generator's finally ran although the connection stays open ...
            after = await await_counts(
                demo_server.url, "serverTime", finished_at_least=before.finished + 1, active_at_most=before.active
            )
            assert after.active == before.active
            # ... and the connection still serves operations.
            again = await client.subscribe("subscription { countdown(from: 1, intervalMs: 0) }")
            assert await again.until_done() == [("next", {"data": {"countdown": 1}}), ("complete", None)]

    run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_abrupt_disconnect_cleans_up(demo_server: ServerProcess, protocol: str) -> None:
    async def scenario() -> None:
        ticks = await counts(demo_server.url, "serverTime")
        chats = await counts(demo_server.url, "messages")
        client = await GraphQLWebSocket.open(ws_url(demo_server), protocol)
        clock = await client.subscribe("subscription { serverTime(intervalMs: 50) }")
        await client.subscribe(LIVE, {"room": "lobby"})
        await clock.next_data()
        await await_counts(demo_server.url, "messages", active_at_least=chats.active + 1)
        client.abort()  # no close frame: the TCP connection is reset
        await client.wait_closed()
        after_ticks = await await_counts(
            demo_server.url, "serverTime", finished_at_least=ticks.finished + 1, active_at_most=ticks.active
        )
        after_chats = await await_counts(
            demo_server.url, "messages", finished_at_least=chats.finished + 1, active_at_most=chats.active
        )
        assert (after_ticks.active, after_chats.active) == (ticks.active, chats.active)

    run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutation_reaches_subscribers_and_is_saved(demo_server: ServerProcess, protocol: str) -> None:
    async def scenario() -> None:
        before = await counts(demo_server.url, "messages")
        async with (
            await GraphQLWebSocket.open(ws_url(demo_server), protocol) as listener,
            await GraphQLWebSocket.open(ws_url(demo_server), protocol) as poster,
        ):
            live = await listener.subscribe(LIVE, {"room": "releases"})
            other_room = await listener.subscribe(LIVE, {"room": "random"})
            await await_counts(demo_server.url, "messages", active_at_least=before.active + 2)
            text = f"shipped over {protocol}"
            result = await execute(demo_server, poster, POST, {"room": "releases", "text": text, "author": "ci"})
            posted = result["data"]["postMessage"]
            received = (await live.next_data())["messages"]
            assert received == posted
            assert (received["room"], received["text"], received["author"]) == ("releases", text, "ci")
            # The other room's subscription got nothing of it: its first message is the next
            # one posted in its own room.
            other = await execute(demo_server, poster, POST, {"room": "random", "text": "elsewhere", "author": "ci"})
            assert (await other_room.next_data())["messages"] == other["data"]["postMessage"]
        history = await adata(demo_server.url, '{ messages(room: "releases", limit: 200) { id text } }')
        assert {"id": posted["id"], "text": text} in history["messages"]

    run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_subscription_with_recent_replays_them_after_joining_then_goes_live(
    demo_server: ServerProcess, protocol: str
) -> None:
    """What a page that re-subscribes after a restart relies on: the recent messages come
    first, read after the subscription joined the room's group, then what is posted."""

    async def scenario() -> None:
        posted = []
        for n in range(3):
            result = await aquery(demo_server.url, POST, {"room": "random", "text": f"before {n}", "author": "ci"})
            posted.append(result["data"]["postMessage"])
        async with await GraphQLWebSocket.open(ws_url(demo_server), protocol) as client:
            replay = f'subscription {{ messages(room: "random", recent: 2) {{ {MESSAGE} }} }}'
            op = await client.subscribe(replay)
            assert [(await op.next_data())["messages"] for _ in range(2)] == posted[1:]
            after = await aquery(demo_server.url, POST, {"room": "random", "text": "after", "author": "ci"})
            assert (await op.next_data())["messages"] == after["data"]["postMessage"]

    run(scenario())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_input_is_a_graphql_error(demo_server: ServerProcess, protocol: str) -> None:
    async def scenario() -> None:
        async with await GraphQLWebSocket.open(ws_url(demo_server), protocol) as client:
            empty = await execute(demo_server, client, POST, {"room": "lobby", "text": "   ", "author": "ci"})
            assert empty["data"] is None
            assert [e["message"] for e in empty["errors"]] == ["Message text must not be empty."]
            long = await execute(demo_server, client, POST, {"room": "lobby", "text": "x" * 501, "author": "ci"})
            assert [e["message"] for e in long["errors"]] == ["Message text is limited to 500 characters, got 501."]
            nowhere = await execute(demo_server, client, POST, {"room": "nowhere", "text": "hi", "author": "ci"})
            assert [e["message"] for e in nowhere["errors"]] == ["No room 'nowhere'."]
            # A subscription with a bad argument: one result carrying the error, then the end.
            bad = await client.subscribe("subscription { countdown(from: -1) }")
            events = await bad.until_done()
            errors = [e["message"] for kind, payload in events if payload for e in payload.get("errors", [])]
            assert errors == ["from must be between 0 and 10000, got -1."], events
            # A document that does not validate is refused with the protocol's error message.
            invalid = await client.subscribe("subscription { noSuchField }")
            kinds = [kind for kind, _ in await invalid.until_done()]
            assert kinds == ["error"], invalid.seen

    run(scenario())


def test_legacy_graphql_ws_runs_subscriptions_only(demo_server: ServerProcess) -> None:
    """Strawberry's graphql-ws handler answers a query or mutation with an error (graphql-transport-ws runs them)."""

    async def scenario() -> None:
        async with await GraphQLWebSocket.open(ws_url(demo_server), LEGACY_WS) as client:
            op = await client.subscribe("{ rooms { slug } }")
            assert await op.until_done() == [("error", {"message": "queries are not allowed"})]
            op = await client.subscribe(POST, {"room": "lobby", "text": "hi", "author": "ci"})
            assert await op.until_done() == [("error", {"message": "mutations are not allowed"})]
        async with await GraphQLWebSocket.open(ws_url(demo_server), TRANSPORT_WS) as client:
            result = await client.execute("{ rooms { slug } }")
            assert {"slug": "lobby"} in result["data"]["rooms"]

    run(scenario())


def test_200_concurrent_subscribers_all_receive_a_posted_message(demo_server: ServerProcess) -> None:
    """100 graphql-transport-ws and 100 graphql-ws connections, one ``messages`` subscription each."""
    subscribers = 200

    async def scenario() -> None:
        before = await counts(demo_server.url, "messages")
        gate = asyncio.Semaphore(50)  # bounded connection burst

        async def subscriber(i: int) -> tuple[GraphQLWebSocket, object]:
            async with gate:
                client = await GraphQLWebSocket.open(ws_url(demo_server), PROTOCOLS[i % 2])
                op = await client.subscribe(LIVE, {"room": "random"})
                return client, op

        started = time.monotonic()
        pairs = await asyncio.gather(*(subscriber(i) for i in range(subscribers)))
        try:
            await await_counts(
                demo_server.url, "messages", active_at_least=before.active + subscribers, timeout_ms=15000
            )
            joined = time.monotonic()
            posted = (
                await adata(demo_server.url, POST, {"room": "random", "text": "hello, everyone", "author": "ci"})
            )["postMessage"]
            received = await asyncio.gather(*(op.next_data(timeout=10) for _, op in pairs))  # type: ignore[attr-defined]
            delivered = time.monotonic()
            assert all(r["messages"] == posted for r in received)
            print(
                f"{demo_server.kind}: {subscribers} subscribers joined in {joined - started:.2f}s, "  # type: ignore[attr-defined]
                f"message delivered to all in {delivered - joined:.3f}s"
            )
        finally:
            await asyncio.gather(*(client.close() for client, _ in pairs))
        await await_counts(
            demo_server.url,
            "messages",
            active_at_most=before.active,
            finished_at_least=before.finished + subscribers,
            timeout_ms=10000,
        )

    run(scenario(), timeout=45)


def test_websocket_origin_is_checked(demo_server: ServerProcess) -> None:
    """Two checks refuse a handshake with 403.

    ``AllowedHostsOriginValidator`` (Channels): the Origin must name a host in ALLOWED_HOSTS,
    and a client sending no Origin is refused too. Then Strawberry's consumer: a page on
    another origin than the endpoint's own (``localhost`` vs ``127.0.0.1`` here, both allowed
    hosts) needs to be listed in its ``allowed_origins``; the demo lists none.
    """

    async def handshake(origin: str | None) -> int:
        try:
            async with connect(ws_url(demo_server), subprotocols=["graphql-transport-ws"], origin=origin) as ws:  # type: ignore[list-item, arg-type]
                await ws.close()
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> None:
        assert await handshake(f"http://127.0.0.1:{demo_server.port}") == 101
        # Strawberry checks the page's origin since 0.335 (the newest on Python 3.10 is
        # 0.334, which leaves that to Channels' validator alone).
        other_allowed_host = 403 if importlib.util.find_spec("strawberry.http.websocket_origin") else 101
        assert await handshake(f"http://localhost:{demo_server.port}") == other_allowed_host
        assert await handshake("http://evil.example") == 403
        assert await handshake(None) == 403

    run(scenario())
