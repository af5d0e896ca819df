"""A zero-window stall: a client that never opens its flow-control window (yet may answer
PINGs) has the stalled stream reset after ``stall_timeout`` with not a byte sent, and its
app told; a stream that moves, however slowly, waits on."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes

from channelserver.errors import ClientDisconnected
from channelserver.protocol.events import Log

from .test_http2 import START, H2Pair, body

STALL = "h2_stall:1"
PAYLOAD = bytes(200_000)  # over the client's 65,535 window


def stalled() -> H2Pair:
    pair = H2Pair(stall_timeout=30.0)
    pair.request()
    pair.app_send(pair.cycle, START)
    pair.app_send(pair.cycle, body(PAYLOAD, more=True))  # a streamed response
    assert STALL in pair.timers
    return pair


def test_a_stream_that_never_gets_a_window_is_reset_and_its_app_told() -> None:
    pair = stalled()
    actions = pair.fire(STALL)
    assert any(isinstance(a, Log) and "got no flow-control window for 30.0s" in a.message for a in actions)
    pair.client_events()
    assert pair.streams[1].reset == ErrorCodes.CANCEL
    assert not pair.machine.blocked(pair.cycle)  # the app's waiting send() returns...
    assert pair.inbox()[-1] == {"type": "http.disconnect"}
    with pytest.raises(ClientDisconnected):  # ...and its next one raises
        pair.app_send(pair.cycle, body(b"more", more=True))
    assert pair.closes == 0  # the connection serves on


def test_a_stream_that_moves_waits_again() -> None:
    pair = stalled()
    pair.client_events()
    pair.client.increment_flow_control_window(1000, stream_id=1)  # a little window:
    pair.client.increment_flow_control_window(1000)  # a little goes out
    pair.flush()
    actions = pair.fire(STALL)
    assert not any(isinstance(a, Log) for a in actions)
    assert STALL in pair.timers
    assert pair.streams[1].reset is None


def test_off_when_unset() -> None:
    pair = H2Pair(stall_timeout=None)
    pair.request()
    pair.app_send(pair.cycle, START)
    pair.app_send(pair.cycle, body(PAYLOAD))
    assert STALL not in pair.timers
