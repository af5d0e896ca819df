"""The worker's TimerHeap: one loop timer for every connection's deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, Ping, Request

from channelserver.config import Config
from channelserver.server.connection import ConnectionProtocol
from channelserver.server.state import ServerState
from channelserver.server.timers import SLACK, Entry, TimerHeap

from .fakes import FakeClockLoop, MockTransport, run, turns


class Owner:
    def __init__(self) -> None:
        self.scheduled: dict[str, Entry] = {}
        self.fired: list[tuple[str, float]] = []

    def timer_due(self, name: str, now: float) -> None:
        self.fired.append((name, now))


def armed(loop: asyncio.AbstractEventLoop) -> int:
    """Timer handles armed in the loop (cancelled ones are not counted)."""
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


def test_entries_fire_in_deadline_order_with_one_loop_handle() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        heap = TimerHeap(loop)
        owners = [Owner() for _ in range(3)]
        start = loop.time()
        for i, owner in enumerate(owners):
            heap.schedule(owner, "ping", start + 3 - i)
        assert armed(loop) == 1
        loop.advance(1.0)
        await turns()
        assert [o.fired for o in owners] == [[], [], [("ping", start + 1 + SLACK)]]
        loop.advance(2.0)
        await turns()
        assert [len(o.fired) for o in owners] == [1, 1, 1]
        assert armed(loop) == 0
        assert len(heap) == 0

    run(scenario(), loop)


def test_a_replaced_entry_is_stale_and_never_fires() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        heap = TimerHeap(loop)
        owner = Owner()
        start = loop.time()
        heap.schedule(owner, "ping", start + 5)
        heap.schedule(owner, "ping", start + 1)  # earlier: the first entry goes stale
        assert len(heap) == 1
        loop.advance(1.0)
        await turns()
        assert owner.fired == [("ping", start + 1 + SLACK)]
        loop.advance(10.0)
        await turns()
        assert owner.fired == [("ping", start + 1 + SLACK)]
        assert heap.stale == 0 and heap.heap == []

    run(scenario(), loop)


def test_forgotten_owners_never_fire_and_are_swept_out() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        heap = TimerHeap(loop)
        owners = [Owner() for _ in range(200)]
        for owner in owners:
            heap.schedule(owner, "ping", loop.time() + 20)
            heap.schedule(owner, "pong", loop.time() + 40)
        for owner in owners[:150]:
            heap.forget(owner)  # the connection closed
        assert len(heap.heap) < 400  # swept once more than half was dead
        assert len(heap) == 100
        loop.advance(40.0)
        await turns()
        assert all(o.fired == [] for o in owners[:150])
        assert all(sorted(n for n, _ in o.fired) == ["ping", "pong"] for o in owners[150:])

    run(scenario(), loop)


def test_a_later_entry_armed_while_firing_does_not_delay_an_earlier_one() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        heap = TimerHeap(loop)
        start = loop.time()

        class Rearming(Owner):
            def timer_due(self, name: str, now: float) -> None:
                super().timer_due(name, now)
                heap.schedule(self, name, now + 20)  # re-armed far ahead from inside a firing

        first, second = Rearming(), Owner()
        heap.schedule(first, "ping", start + 1)
        heap.schedule(second, "ping", start + 2)
        loop.advance(1.0)
        await turns()
        loop.advance(1.0)
        await turns()
        assert second.fired == [("ping", start + 2 + SLACK)]

    run(scenario(), loop)


async def ws_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def test_loop_timers_stay_constant_as_websocket_connections_grow() -> None:
    """Pings for every socket of a worker ride one loop timer: the count of armed loop
    handles is the same for 10 sockets as for 500, and every socket still gets its ping."""
    loop = FakeClockLoop()

    async def scenario() -> None:
        state = ServerState(Config(ws_ping_interval=20.0, ws_ping_timeout=20.0), ws_app, loop)
        pairs: list[tuple[wsproto.WSConnection, MockTransport]] = []
        counts = {}
        for n in (10, 500):
            while len(pairs) < n:
                protocol = ConnectionProtocol(state)
                transport = MockTransport(loop)
                transport.protocol = protocol
                protocol.connection_made(transport)
                client = wsproto.WSConnection(ConnectionType.CLIENT)
                protocol.data_received(client.send(Request(host="example.com", target="/ws/")))
                pairs.append((client, transport))
                loop.advance(0.01)  # the sockets' deadlines are all different
            await turns()
            counts[n] = armed(loop)
        assert counts[10] == counts[500] <= 2, counts
        for client, transport in pairs:
            client.receive_data(transport.take())
            assert [type(e) for e in client.events()] == [AcceptConnection]
        loop.advance(20.0)
        for _ in range(5):
            await turns()
        for client, transport in pairs:
            client.receive_data(transport.take())
            assert [type(e) for e in client.events()] == [Ping]
        assert len(state.timers) == 1000  # each socket: its next ping and the pong timeout
        for _, transport in pairs:
            transport.protocol.connection_lost(None)  # type: ignore[union-attr]
        await turns()  # the apps see their disconnect and return
        assert len(state.timers) == 0
        assert armed(loop) <= 1

    run(scenario(), loop)
