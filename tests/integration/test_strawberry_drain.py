"""``channelserver.strawberry.GraphQLWSConsumer`` under real shutdowns, with real GraphQL clients.

Both GraphQL WebSocket protocols are driven by the small clients in
``lifecycle_apps/gql_clients.py`` against ``lifecycle_app.py``: the drain-aware consumer at
``/graphql``, Strawberry's own at ``/graphql-stock``. Resolvers record ``start`` and
``finally`` lines (``lifecycle_schema.py``), so every test can prove no resolver was left
running, however its operation ended.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest
from lifecycle_apps.gql_clients import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, GraphQLWSClient, values
from lifecycle_apps.harness import (
    APPS,
    ROOT,
    SHUTTING_DOWN,
    Events,
    Gauges,
    ServerProcess,
    reading,
    serve,
    stop_timed,
    wait_until,
)

from channelserver.strawberry import RESTARTING_CODE, RESTARTING_MESSAGE
from tests.servers import uvicorn

APP = "lifecycle_app:application"
COUNT = "subscription ($n: Int!, $interval: Float!, $tag: String!) { count(n: $n, interval: $interval, tag: $tag) }"
FOREVER = "subscription ($interval: Float!, $tag: String!) { forever(interval: $interval, tag: $tag) }"
SLOW_QUERY = "query ($s: Float!) { slow(seconds: $s) }"
SLOW_MUTATION = 'mutation ($s: Float!) { slowEcho(text: "kept", seconds: $s) }'


@pytest.fixture
def events(tmp_path: Path) -> Events:
    return Events(tmp_path / "events.log")


def balanced(events: Events, name: str) -> bool:
    """Every ``name`` resolver that started has run its ``finally``."""
    lines = events.lines()
    starts = sum(1 for line in lines if line.startswith(f"{name} start"))
    return starts > 0 and starts == sum(1 for line in lines if line.startswith(f"{name} finally"))


async def signal_when_draining(server: ServerProcess, sig: int = signal.SIGTERM) -> float:
    """Send ``sig`` and return once the server logged that its drain began (its time of signal)."""
    sent = time.monotonic()
    server.signal(sig)
    await asyncio.to_thread(server.wait_for, SHUTTING_DOWN, 10)
    return sent


def assert_refused(message: dict[str, object], op_id: str) -> None:
    assert message["id"] == op_id and message["type"] == "error", message
    payload = message["payload"]
    error = payload[0] if isinstance(payload, list) else payload  # transport-ws: a list; graphql-ws: one
    assert error["message"] == RESTARTING_MESSAGE, message  # type: ignore[index]
    assert error["extensions"]["code"] == RESTARTING_CODE, message  # type: ignore[index]


# What else runs when the drain begins. Strawberry serves queries and mutations over
# graphql-transport-ws only; over the legacy graphql-ws it refuses them, so a second
# subscription stands in there.
IN_FLIGHT = {
    TRANSPORT_WS: [
        ("query", SLOW_QUERY, {"s": 1.0}, rb"event: slow query running", {"slow": "slept 1.0"}),
        ("mutation", SLOW_MUTATION, {"s": 1.0}, rb"event: slow mutation running", {"slowEcho": "kept"}),
    ],
    LEGACY_WS: [
        ("second", COUNT, {"n": 2, "interval": 1.0, "tag": "second"}, rb"", {"count": 1}),
    ],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_running_operations_finish_then_1012_and_new_ones_are_refused(protocol: str, events: Events) -> None:
    """SIGTERM 0.2 s into a 3 s subscription, with other operations in flight: every item,
    every result and every ``complete`` arrive, a new operation gets a GraphQL error, then 1012."""
    n, interval = 16, 0.2  # 15 more items, 3 s after the first
    with serve(APP, events=events) as server:

        async def scenario() -> tuple[list[dict[str, object]], int | None, str, float, float]:
            client = await GraphQLWSClient.connect(f"{server.ws_url}/graphql", protocol)
            await client.subscribe("sub", COUNT, {"n": n, "interval": interval, "tag": "finite"})
            first = await client.receive()
            assert first["id"] == "sub" and first["type"] == "next", first
            received = [first]
            for op_id, query, variables, running, _ in IN_FLIGHT[protocol]:
                await client.subscribe(op_id, query, variables)
                if running:  # a query's resolver tells us it runs; a subscription, by its first item
                    await asyncio.to_thread(server.wait_for, re.compile(running), 10)
                else:
                    received += [await client.receive()]
            sent = await signal_when_draining(server)
            await client.subscribe("late", COUNT, {"n": 1, "interval": 0, "tag": "late"})
            messages, code, reason = await client.until_closed()
            closed = time.monotonic()
            return received + messages, code, reason, closed - sent, sent

        messages, code, reason, closed_after, sent = asyncio.run(scenario())
        rc = server.wait(10)
    exited_after = time.monotonic() - sent

    print(f"{protocol}: drain to 1012 {closed_after:.2f}s, to exit {exited_after:.2f}s")

    def of(op_id: str) -> list[dict[str, object]]:
        return [m for m in messages if m.get("id") == op_id]

    assert values(of("sub"), "count") == list(range(n))
    assert of("sub")[-1]["type"] == "complete"
    for op_id, _, _, _, last_data in IN_FLIGHT[protocol]:
        assert of(op_id)[-1]["type"] == "complete", of(op_id)
        assert of(op_id)[-2]["payload"] == {"data": last_data}, of(op_id)
    assert len(of("late")) == 1, of("late")
    assert_refused(of("late")[0], "late")
    # The last frame before the close is the subscription's complete; then 1012.
    assert messages[-1] == {"id": "sub", "type": "complete"}
    assert (code, reason) == (1012, "server restarting")
    assert 2.5 < closed_after < 4.5, closed_after
    assert events.count("count finally finite") == 1
    assert events.count("count start late") == 0
    assert rc == 0, server.text


def test_strawberrys_own_consumer_is_cut_off_at_once(events: Events) -> None:
    """The contrast: without the drain-aware consumer, the subscription ends mid-stream with 1012."""
    with serve(APP, events=events) as server:

        async def scenario() -> tuple[list[dict[str, object]], int | None, float]:
            client = await GraphQLWSClient.connect(f"{server.ws_url}/graphql-stock", TRANSPORT_WS)
            await client.subscribe("sub", COUNT, {"n": 16, "interval": 0.2, "tag": "stock"})
            await client.receive()
            sent = await signal_when_draining(server)
            messages, code, _ = await client.until_closed()
            return messages, code, time.monotonic() - sent

        messages, code, closed_after = asyncio.run(scenario())
        rc = server.wait(10)

    assert code == 1012
    assert closed_after < 1.0
    assert not any(m["type"] == "complete" for m in messages)
    assert len(values(messages, "count")) < 15
    assert rc == 0
    assert events.count("count finally stock") == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_endless_subscription_is_closed_at_graceful_timeout(protocol: str, events: Events) -> None:
    """A subscription that never ends holds the connection only until ``graceful_timeout``."""
    graceful = 2.0
    with serve(APP, "--graceful-timeout", str(graceful), events=events) as server:

        async def scenario() -> tuple[list[dict[str, object]], int | None, float, float]:
            client = await GraphQLWSClient.connect(f"{server.ws_url}/graphql", protocol)
            await client.subscribe("sub", FOREVER, {"interval": 0.1, "tag": "endless"})
            await client.receive()
            sent = await signal_when_draining(server)
            messages, code, _ = await client.until_closed()
            return messages, code, time.monotonic() - sent, sent

        messages, code, closed_after, sent = asyncio.run(scenario())
        rc = server.wait(10)
    exited_after = time.monotonic() - sent

    print(f"{protocol} endless: 1012 after {closed_after:.2f}s, exit after {exited_after:.2f}s")
    assert code == 1012
    assert graceful - 0.2 < closed_after < graceful + 1.0, closed_after
    assert len(values(messages, "forever")) >= 10  # it kept streaming during the drain
    assert events.count("forever finally endless") == 1
    assert rc == 0, server.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_resolvers_finish_and_no_task_is_left_however_an_operation_ends(protocol: str, events: Events) -> None:
    """Completed by the server, stopped by the client, the socket closed, the TCP connection
    dropped: each time the resolver's ``finally`` runs and the task count returns to where it was."""
    with serve(APP, "--no-access-log", events=events) as server:
        baseline = Gauges.read(server).tasks

        async def scenario() -> None:
            url = f"{server.ws_url}/graphql"
            done = await GraphQLWSClient.connect(url, protocol)
            await done.subscribe("1", COUNT, {"n": 3, "interval": 0.01, "tag": "completes"})
            assert values(await done.until_done("1"), "count") == [0, 1, 2]
            await done.subscribe("2", FOREVER, {"interval": 0.01, "tag": "stopped"})
            await done.receive()
            await done.stop("2")
            await done.close()
            for tag, leave in (("closed", "close"), ("dropped", "abort")):
                client = await GraphQLWSClient.connect(url, protocol)
                await client.subscribe("1", FOREVER, {"interval": 0.01, "tag": tag})
                await client.receive()
                if leave == "close":
                    await client.close()
                else:
                    client.abort()

        asyncio.run(scenario())
        wait_until(lambda: balanced(events, "forever") and balanced(events, "count"), 5, "every resolver's finally")
        wait_until(lambda: Gauges.read(server).tasks <= baseline, 5, f"task count back to {baseline}")
        rc = server.stop()

    for tag in ("stopped", "closed", "dropped"):
        assert events.count(f"forever finally {tag}") == 1, events.lines()
    assert events.count("count finally completes") == 1
    assert rc == 0, server.text


def test_without_the_extension_it_is_strawberrys_consumer(events: Events) -> None:
    """Under another server (uvicorn: no ``channelserver.drain`` in the scope) the consumer
    answers exactly as Strawberry's own: the same script gives the same transcript."""
    pythonpath = os.pathsep.join([str(ROOT), str(APPS)])
    env = {
        "PYTHONPATH": pythonpath,
        "LIFECYCLE_EVENTS": str(events.path),
        "DJANGO_SETTINGS_MODULE": "lifecycle_settings",
    }
    with uvicorn(APP, "--lifespan", "off", env=env) as server:

        async def script(path: str, protocol: str) -> list[dict[str, object]]:
            client = await GraphQLWSClient.connect(f"{server.ws_url}{path}", protocol)
            transcript = []
            await client.subscribe("1", COUNT, {"n": 3, "interval": 0.01, "tag": protocol})
            transcript += await client.until_done("1")
            await client.subscribe("2", "{ hello }")  # graphql-ws: "queries are not allowed"
            transcript += await client.until_done("2")
            await client.subscribe("3", FOREVER, {"interval": 0.01, "tag": protocol})
            transcript += [await client.receive()]
            await client.stop("3")
            await client.subscribe("4", COUNT, {"n": 1, "interval": 0.0, "tag": protocol})
            transcript += [m for m in await client.until_done("4") if m["id"] == "4"]
            await client.close()
            return transcript

        async def scenario() -> dict[tuple[str, str], list[dict[str, object]]]:
            return {
                (path, protocol): await script(path, protocol)
                for protocol in PROTOCOLS
                for path in ("/graphql", "/graphql-stock")
            }

        transcripts = asyncio.run(scenario())
    for protocol in PROTOCOLS:
        assert transcripts[("/graphql", protocol)] == transcripts[("/graphql-stock", protocol)]
        counted = [m for m in transcripts[("/graphql", protocol)] if m["id"] in ("1", "4")]
        assert values(counted, "count") == [0, 1, 2, 0]
    wait_until(lambda: balanced(events, "forever") and balanced(events, "count"), 5, "every resolver's finally")


# The leak test's clients do not negotiate permessage-deflate: each deflate context is a few
# hundred kB of zlib state, and glibc's heap keeps what 100 concurrent contexts needed long
# after they are freed (tracemalloc and the gc census stay flat, malloc_trim gives little
# back; uvicorn shows the same curve). RSS then measures the allocator, not a leak. The
# task and descriptor gauges are exact with or without it; see docs/lifecycle.md.
NO_DEFLATE = {"compression": None}


async def cycles(url: str, rounds: int, connections: int = 10) -> None:
    """``rounds`` subscribe/complete cycles over ``connections`` sockets of both protocols:
    even rounds complete on their own, odd ones are stopped by the client after one item."""

    async def one(index: int, count: int) -> None:
        protocol = PROTOCOLS[index % 2]
        client = await GraphQLWSClient.connect(url, protocol, **NO_DEFLATE)
        for i in range(count):
            op_id = f"c{i}"
            if i % 2 == 0:
                await client.subscribe(op_id, COUNT, {"n": 2, "interval": 0.0, "tag": "cycle"})
                assert values(await client.until_done(op_id), "count") == [0, 1]
            else:
                await client.subscribe(op_id, FOREVER, {"interval": 0.005, "tag": "cycle"})
                message = await client.receive()
                while message.get("id") != op_id:
                    message = await client.receive()
                await client.stop(op_id)
                if protocol == LEGACY_WS:  # graphql-ws answers a stop with complete
                    await client.until_done(op_id)
        await client.close()

    per = rounds // connections
    await asyncio.gather(*(one(i, per) for i in range(connections)))


async def drops(url: str, n: int, events: Events, batch: int = 50) -> None:
    """``n`` clients that subscribe, take one item and vanish without a close frame, ``batch``
    at a time; each batch waits until the server ran the last one's resolvers' ``finally``,
    so the server never holds more than ``batch`` of them and the peak is the same each run."""

    async def one(index: int) -> None:
        client = await GraphQLWSClient.connect(url, PROTOCOLS[index % 2], **NO_DEFLATE)
        await client.subscribe("1", FOREVER, {"interval": 0.05, "tag": "drop"})
        await client.receive()
        client.abort()

    for start in range(0, n, batch):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + batch))))
        await asyncio.to_thread(wait_until, lambda: balanced(events, "forever"), 10, "dropped clients' finally")


def test_no_leak_after_1000_cycles_and_500_dropped_connections(events: Events) -> None:
    """Tasks, descriptors and live objects come back to a warmed-up baseline, RSS within
    RSS_FRACTION of it (5 %; 10 % on 3.13, see the harness); SIGTERM then exits in 1 s."""
    warm_cycles, warm_drops, n_cycles, n_drops = 300, 500, 1000, 500
    with serve(APP, "--no-access-log", events=events) as server, reading(server):
        url = f"{server.ws_url}/graphql"

        def settle(what: str) -> None:
            wait_until(lambda: balanced(events, "forever") and balanced(events, "count"), 10, f"{what}: finally")

        # Warm up, so the baseline holds what first use allocates (code paths, the executor
        # thread, caches, the allocator's high-water mark): measured, RSS climbs ~7 % over the
        # first 500 dropped clients, then stays flat however many follow.
        asyncio.run(cycles(url, warm_cycles))
        asyncio.run(drops(url, warm_drops, events))
        settle("warm-up")
        baseline = Gauges.read(server)

        asyncio.run(cycles(url, n_cycles))
        asyncio.run(drops(url, n_drops, events))
        settle("load")
        after = baseline
        over: list[str] = []

        def back() -> bool:
            nonlocal after, over
            after = Gauges.read(server)
            over = after.within(baseline)
            return not over

        try:
            wait_until(back, 5, "gauges back to baseline")
        except TimeoutError:
            pytest.fail(f"after the load: {over}")
        rc, took = stop_timed(server)

    print(f"baseline {baseline}; after the load {after}; SIGTERM to exit {took:.2f}s")
    assert events.count("count start cycle") == (warm_cycles + n_cycles) // 2
    assert events.count("forever start drop") == warm_drops + n_drops
    assert rc == 0
    assert took < 1.0, f"exit took {took:.2f}s"
    assert "Traceback" not in server.text, server.text[-3000:]


def test_endless_subscriptions_under_drain_spread_close_as_a_slope(events: Events) -> None:
    """Held sockets are not closed together at graceful_timeout: each one's hold ends
    ``graceful_timeout`` after its own moment in ``drain_spread``, so a fleet of endless
    subscriptions still reconnects as a slope."""
    n, spread, graceful = 24, 2.0, 1.0
    flags = ("--no-access-log", "--drain-spread", str(spread), "--graceful-timeout", str(graceful))
    with serve(APP, *flags, events=events) as server:

        async def scenario() -> tuple[list[float], list[int | None]]:
            clients = []
            for i in range(n):
                client = await GraphQLWSClient.connect(f"{server.ws_url}/graphql", TRANSPORT_WS)
                await client.subscribe("sub", FOREVER, {"interval": 0.2, "tag": f"endless{i}"})
                await client.receive()
                clients.append(client)
            sent = await signal_when_draining(server)

            async def closed(client: GraphQLWSClient) -> tuple[float, int | None]:
                _, code, _ = await client.until_closed(timeout=spread + graceful + 5)
                return time.monotonic() - sent, code

            ends = await asyncio.gather(*(closed(c) for c in clients))
            return sorted(t for t, _ in ends), [code for _, code in ends]

        moments, codes = asyncio.run(scenario())
        rc = server.wait(10)
    print(
        f"{n} endless subscriptions, spread {spread}s, graceful {graceful}s: closed {moments[0]:.2f}s to {moments[-1]:.2f}s"
    )
    assert codes == [1012] * n
    assert moments[0] > graceful - 0.2, moments  # each held for graceful_timeout after its moment
    assert moments[-1] < spread + graceful + 1.0, moments
    assert moments[-1] - moments[0] > 0.6 * spread, moments  # a slope, not a wall
    assert f"Drain: {n} WebSocket(s) told to close with 1012" in server.text
    assert f"{n} held open by their app" in server.text
    assert f"Drain: {n} held WebSocket(s) closed at their graceful_timeout" in server.text
    assert rc == 0, server.text
