"""HTTP/2 keepalive: a PING after ``ping_interval`` of silence from the client, the
connection closed when its ACK does not come within ``ping_timeout`` (every stream's app
told), nothing sent while the client is heard from."""

from __future__ import annotations

import h2.events

from channelserver.protocol.events import CloseTransport, Log
from channelserver.protocol.http2 import PING, PONG

from .test_http2 import H2Pair


def pings_seen(pair: H2Pair) -> int:
    return sum(isinstance(e, h2.events.PingAckReceived) for e in pair.events)


def test_a_silent_client_is_pinged_and_its_ack_keeps_the_connection() -> None:
    pair = H2Pair(ping_interval=20.0, ping_timeout=5.0)
    assert PING in pair.timers
    pair.fire(PING)  # the handshake was heard: nothing sent, the timer re-armed
    assert PING in pair.timers and PONG not in pair.timers
    pair.fire(PING)  # silence since: a PING
    assert PONG in pair.timers
    events = pair.client_events()
    assert [type(e).__name__ for e in events] == ["PingReceived"]
    pair.flush()  # the h2 client acknowledges it
    assert PONG not in pair.timers
    assert pair.closes == 0


def test_no_ack_within_the_timeout_closes_and_tells_every_stream() -> None:
    pair = H2Pair(ping_interval=20.0, ping_timeout=5.0)
    cycle = pair.cycle_of(pair.request("GET", "/sse"))
    assert pair.receive(cycle)["type"] == "http.request"
    pair.fire(PING)
    pair.fire(PING)
    actions = pair.fire(PONG)
    assert any(isinstance(a, Log) and "No HTTP/2 PING ACK" in a.message for a in actions)
    assert any(isinstance(a, CloseTransport) for a in actions)
    assert pair.receive(cycle) == {"type": "http.disconnect"}


def test_without_an_interval_nothing_is_armed() -> None:
    pair = H2Pair()
    assert PING not in pair.timers
