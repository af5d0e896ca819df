"""Several server processes sharing subscriptions through a real Redis (channels_redis).

A redis-server of the test's own (tmp_path, no persistence) and two server processes of
the demo with ``REDIS_URL`` set: one started with ``python -m channelserver``, the other
with ``manage.py runchannelserver`` (the command ``make run`` uses), both on one SQLite
database. A mutation on either reaches subscribers on both, also after a quiet spell longer
than the Redis client's default read timeout (redis-py 8: 5 s), which the settings raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PYTHON, ServerProcess

from .clients import LEGACY_WS, TRANSPORT_WS, GraphQLWebSocket, adata, await_counts, counts
from .conftest import fresh_db, run, start_demo

MESSAGE = "id room author text"
POST = f"""mutation Post($room: String!, $text: String!) {{
  postMessage(room: $room, text: $text, author: "redis") {{ {MESSAGE} }} }}"""
LIVE = f'subscription {{ messages(room: "lobby") {{ {MESSAGE} }} }}'
#: The quiet spell is the condition under test, so here the test does wait for time to pass:
#: longer than channels_redis's 5 s blocking pop and redis-py 8's default 5 s read timeout.
QUIET_SECONDS = 6.0


@pytest.fixture
def two_servers(redis_url: str, template_db: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    db = fresh_db(template_db, tmp_path)
    env = {"REDIS_URL": redis_url, "DEMO_DB": str(db), "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    with start_demo("channelserver", db, env={"REDIS_URL": redis_url}) as first:
        command = [PYTHON, "manage.py", "runchannelserver", "--noreload", "--skip-checks", "127.0.0.1:0"]
        with ServerProcess(command, env=env) as second:
            yield first, second


def test_a_mutation_on_one_process_reaches_subscribers_on_the_other(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_servers

    async def scenario() -> None:
        pids = {(await counts(server.url, "messages")).pid for server in two_servers}
        assert len(pids) == 2, "two processes, each with its own counters"
        # One subscriber of each protocol on each process.
        clients = [
            await GraphQLWebSocket.open(f"{server.ws_url}/graphql/", protocol)
            for server in two_servers
            for protocol in (TRANSPORT_WS, LEGACY_WS)
        ]
        try:
            ops = [await client.subscribe(LIVE) for client in clients]
            for server in two_servers:
                await await_counts(server.url, "messages", active_at_least=2, timeout_ms=5000)
            for poster in (first, second, first):
                text = f"posted on pid {(await counts(poster.url, 'messages')).pid}"
                posted = (await adata(poster.url, POST, {"room": "lobby", "text": text}))["postMessage"]
                received = await asyncio.gather(*(op.next_data() for op in ops))
                assert [r["messages"] for r in received] == [posted] * len(ops)
                if poster is second:
                    # A quiet room: nothing arrives for a while, and the subscriptions live on.
                    await asyncio.sleep(QUIET_SECONDS)
                    assert all(op.events.empty() for op in ops)
                    for server in two_servers:
                        still = await counts(server.url, "messages")
                        assert (still.active, still.finished) == (2, 0)
        finally:
            for client in clients:
                await client.close()
        for server in two_servers:
            after = await await_counts(server.url, "messages", active_at_most=0, finished_at_least=2)
            assert after.active == 0

    run(scenario())
