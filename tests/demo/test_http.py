"""GraphQL over HTTP against channelserver and Daphne: queries, mutations, GraphiQL, the live
page, and subscriptions streamed as multipart or Server-Sent Events.

The cleanup of an HTTP subscription whose client went away is where the two servers are
meant to differ (tests/demo/differences.py); the test asserts each server's side of it.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.servers import ServerProcess

from .clients import HTTP_STREAMS, MULTIPART, SSE, Counts, HTTPSubscription, adata, await_counts, counts, data, query
from .conftest import run
from .differences import HTTP_STREAM_CLEANUP_ON_DISCONNECT, HTTP_STREAM_CLEANUP_WITHIN_MS

pytestmark = pytest.mark.parity

POST = """mutation Post($room: String!, $text: String!) {
  postMessage(room: $room, text: $text, author: "http") { id room author text } }"""


async def assert_stream_cleanup(server: ServerProcess, field: str, before: Counts, left: float, kind: str) -> None:
    """After an HTTP stream's client left: the resolver's ``finally`` ran within the bound
    (channelserver), or the resolver is still running (Daphne), per tests/demo/differences.py."""
    cleans_up = HTTP_STREAM_CLEANUP_ON_DISCONNECT[server.kind]  # type: ignore[attr-defined]
    try:
        after = await await_counts(
            server.url, field, finished_at_least=before.finished + 1, timeout_ms=HTTP_STREAM_CLEANUP_WITHIN_MS
        )
    except AssertionError as exc:
        assert not cleans_up, f"the {field} resolver kept running after its {kind} client left: {exc}"
        still = await counts(server.url, field)
        assert (still.active, still.finished) == (before.active + 1, before.finished)
    else:
        assert cleans_up, "Daphne now stops HTTP streams whose client left: update tests/demo/differences.py"
        assert after.active == before.active
        elapsed = 1000 * (time.monotonic() - left)
        print(f"{server.kind} {kind} {field}: finally ran {elapsed:.0f} ms after the client left")  # type: ignore[attr-defined]


def test_queries_over_get_and_post(demo_server: ServerProcess) -> None:
    rooms = [{"slug": "lobby", "title": "Lobby"}, {"slug": "random", "title": "Random"}]
    rooms.append({"slug": "releases", "title": "Releases"})
    assert query(demo_server.url, "{ rooms { slug title } }") == {"data": {"rooms": rooms}}
    assert query(demo_server.url, "{ rooms { slug title } }", method="GET") == {"data": {"rooms": rooms}}
    stats = data(demo_server.url, "{ stats { pid activeSubscriptions finishedSubscriptions } }")["stats"]
    assert stats["pid"] > 0


def test_mutation_validates_saves_and_lists(demo_server: ServerProcess) -> None:
    empty = query(demo_server.url, POST, {"room": "lobby", "text": " \n "})
    assert empty["data"] is None
    assert [(e["message"], e["path"]) for e in empty["errors"]] == [
        ("Message text must not be empty.", ["postMessage"])
    ]
    long = query(demo_server.url, POST, {"room": "lobby", "text": "é" * 501})
    assert [e["message"] for e in long["errors"]] == ["Message text is limited to 500 characters, got 501."]
    exactly = data(demo_server.url, POST, {"room": "lobby", "text": "é" * 500})["postMessage"]
    posted = data(demo_server.url, POST, {"room": "lobby", "text": "  over HTTP  "})["postMessage"]
    assert (posted["room"], posted["author"], posted["text"]) == ("lobby", "http", "over HTTP")
    recent = data(demo_server.url, '{ messages(room: "lobby", limit: 2) { id text } }')["messages"]
    assert recent == [{"id": exactly["id"], "text": "é" * 500}, {"id": posted["id"], "text": "over HTTP"}]
    # Mutations are refused over GET (a link must not change state).
    with httpx.Client() as client:
        response = client.get(
            f"{demo_server.url}/graphql/", params={"query": 'mutation { postMessage(room: "lobby", text: "x") { id } }'}
        )
    assert (response.status_code, response.text) == (400, "mutations are not allowed when using GET")


def test_graphiql_and_the_live_page_are_served(demo_server: ServerProcess) -> None:
    with httpx.Client(base_url=demo_server.url, timeout=10) as client:
        graphiql = client.get("/graphql/", headers={"accept": "text/html"})
        assert graphiql.status_code == 200
        assert graphiql.headers["content-type"].startswith("text/html")
        assert "graphiql" in graphiql.text.lower()
        page = client.get("/")
        assert page.status_code == 200
        assert 'id="messages"' in page.text
        assert "/static/demo_project/app.js" in page.text
        for name in ("app.js", "graphql-ws-client.js", "style.css"):
            static = client.get(f"/static/demo_project/{name}")
            assert static.status_code == 200, name
        assert "connection_init" in client.get("/static/demo_project/graphql-ws-client.js").text


@pytest.mark.parametrize("kind", HTTP_STREAMS)
def test_http_subscription_streams_n_items_then_ends(demo_server: ServerProcess, kind: str) -> None:
    async def scenario() -> None:
        before = await counts(demo_server.url, "countdown")
        async with HTTPSubscription(
            demo_server.url, kind, "subscription { countdown(from: 4, intervalMs: 10) }"
        ) as sub:
            assert sub.status == 200
            expected_type = "multipart/mixed" if kind == MULTIPART else "text/event-stream"
            assert sub.headers["content-type"].startswith(expected_type)
            events = [event async for event in sub.events()]
        assert events == [("next", {"data": {"countdown": n}}) for n in (4, 3, 2, 1)] + [("complete", None)]
        await await_counts(demo_server.url, "countdown", finished_at_least=before.finished + 1)

    run(scenario())


@pytest.mark.parametrize("kind", HTTP_STREAMS)
def test_http_subscription_receives_a_posted_message(demo_server: ServerProcess, kind: str) -> None:
    """``messages`` listens on a channel of its own, so it works over HTTP streams too.

    The response head may come only with the first part (an SSE stream starts with no
    heartbeat, and ASGI servers may hold ``http.response.start`` until the body begins),
    so the request is started in the background and the message posted meanwhile.
    """

    async def scenario() -> None:
        before = await counts(demo_server.url, "messages")
        sub = HTTPSubscription(demo_server.url, kind, 'subscription { messages(room: "random") { id text } }')
        try:
            started = asyncio.ensure_future(sub.start())
            await await_counts(demo_server.url, "messages", active_at_least=before.active + 1)
            posted = (await adata(demo_server.url, POST, {"room": "random", "text": f"via {kind}"}))["postMessage"]
            await started
            assert sub.status == 200
            event = await sub.next_event()
            assert event == ("next", {"data": {"messages": {"id": posted["id"], "text": f"via {kind}"}}})
        finally:
            await sub.close()
        left = time.monotonic()
        # The resolver now waits for the room's next message: sending it to the departed
        # client is what tells the resolver (under channelserver) that nobody listens.
        await adata(demo_server.url, POST, {"room": "random", "text": "anyone still there?"})
        await assert_stream_cleanup(demo_server, "messages", before, left, kind)

    run(scenario())


@pytest.mark.parametrize("kind", HTTP_STREAMS)
def test_http_subscription_cleanup_when_the_client_goes_away(demo_server: ServerProcess, kind: str) -> None:
    """channelserver: the resolver's ``finally`` runs within 1 s of the client leaving. Daphne: it does not."""

    async def scenario() -> None:
        before = await counts(demo_server.url, "serverTime")
        sub = await HTTPSubscription(demo_server.url, kind, "subscription { serverTime(intervalMs: 50) }").start()
        for _ in range(2):
            assert (await sub.next_event())[0] == "next"
        await await_counts(demo_server.url, "serverTime", active_at_least=before.active + 1)
        await sub.close()
        await assert_stream_cleanup(demo_server, "serverTime", before, time.monotonic(), kind)

    run(scenario())


def test_http_stream_to_a_missing_room_is_an_error_event(demo_server: ServerProcess) -> None:
    async def scenario() -> None:
        async with HTTPSubscription(demo_server.url, SSE, 'subscription { messages(room: "nowhere") { id } }') as sub:
            events = [event async for event in sub.events()]
        assert events == [("next", {"data": None, "errors": [{"message": "No room 'nowhere'."}]}), ("complete", None)]

    run(asyncio.wait_for(scenario(), 10))
