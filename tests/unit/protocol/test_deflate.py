"""permessage-deflate with bounded memory (channelserver/protocol/deflate.py).

A real wsproto client on the other side decides whether every message still means what
it meant: the policy changes memory and how long contexts live, never what is delivered.
"""

from __future__ import annotations

import random
import string
from typing import Any

from wsproto.events import AcceptConnection, TextMessage
from wsproto.extensions import PerMessageDeflate

from channelserver.protocol.deflate import Deflate
from channelserver.protocol.websocket import DEFLATE

from .helpers import WSPair


class Offer(PerMessageDeflate):
    """A client extension that offers exactly ``offer`` (Chrome sends
    ``permessage-deflate; client_max_window_bits``)."""

    def __init__(self, offer: str) -> None:
        super().__init__()
        self._offer = offer

    def offer(self) -> str:
        return self._offer


CHROME = "client_max_window_bits"


def payloads(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = ["subscription", "data", "price", "ticker", '{"id":', '"next"', "payload", "42", "null"]
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 60))))
        elif kind == 1:
            out.append("".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 300))))
        else:
            out.append("é€😀" * rng.randrange(1, 40))
    return out


def connected(offer: str, **ws_options: Any) -> tuple[WSPair, Deflate, PerMessageDeflate, str]:
    pair = WSPair(ws_options={"per_message_deflate": True, **ws_options})
    client_ext = Offer(offer)
    pair.connect(extensions=[client_ext])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    events = pair.client_events()
    assert [type(e) for e in events] == [AcceptConnection]
    deflate = pair.machine.deflate
    assert isinstance(deflate, Deflate)
    head = bytes(pair.wire).split(b"\r\n\r\n", 1)[0].decode()
    agreed = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-extensions")
    )
    return pair, deflate, client_ext, agreed


def fire(pair: WSPair) -> None:
    """The idle timer comes due, as the loop would run it."""
    del pair.timers[DEFLATE]
    pair.run(pair.machine.timer_fired(DEFLATE))


def round_trip(pair: WSPair, messages: list[str]) -> None:
    """Each message from the app reaches the client compressed and intact, and each from
    the client reaches the app intact."""
    for message in messages:
        start = len(pair.wire)
        pair.app_send(pair.cycle, {"type": "websocket.send", "text": message})
        assert pair.wire[start] & 0x40, "RSV1: compressed"
        assert [e.data for e in pair.client_events()] == [message]
        pair.send(TextMessage(data=message))
        assert pair.receive() == {"type": "websocket.receive", "text": message}


def test_by_default_no_context_outlives_a_message_and_the_client_window_is_bounded() -> None:
    pair, deflate, client_ext, agreed = connected(f"permessage-deflate; {CHROME}")
    assert (
        agreed
        == "permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=12"
    )
    assert client_ext.client_no_context_takeover and client_ext.client_max_window_bits == 12
    assert deflate.contexts == 0  # made on first use
    for message in payloads(40):
        round_trip(pair, [message])
        assert deflate.contexts == 0, "dropped after each message, both directions"
    assert DEFLATE not in pair.timers  # nothing to drop later


def test_an_offered_server_window_is_agreed_and_a_client_window_over_ours_is_lowered() -> None:
    pair, _, _, agreed = connected("permessage-deflate; client_max_window_bits=15; server_max_window_bits=9")
    assert agreed == (
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
        "client_max_window_bits=12; server_max_window_bits=9"
    )
    round_trip(pair, payloads(20))


def test_a_window_outside_9_to_15_declines_the_extension() -> None:
    pair = WSPair(ws_options={"per_message_deflate": True})
    pair.connect(extensions=[Offer("server_max_window_bits=8")])
    pair.receive()
    pair.app_send(pair.cycle, {"type": "websocket.accept"})
    (event,) = pair.client_events()
    assert isinstance(event, AcceptConnection) and event.extensions == []
    assert pair.machine.deflate is None


def test_with_ws_deflate_idle_contexts_are_kept_then_the_compressor_is_dropped_when_quiet() -> None:
    pair, deflate, _, agreed = connected(f"permessage-deflate; {CHROME}", deflate_idle=30.0)
    assert agreed == "permessage-deflate; client_max_window_bits=12"  # takeover both ways, as offered
    assert deflate.contexts == 0 and DEFLATE not in pair.timers  # made on first use
    round_trip(pair, payloads(5))
    assert deflate._compressor is not None and deflate._decompressor is not None
    assert pair.timers[DEFLATE] == 30.0
    fire(pair)  # messages went out in this period: kept
    assert deflate._compressor is not None and pair.timers[DEFLATE] == 30.0
    fire(pair)  # a quiet period: dropped, not re-armed
    assert deflate._compressor is None and DEFLATE not in pair.timers
    # The next message starts a fresh stream, which the client (taking over its context)
    # reads; and its own messages still decompress with the server's kept context.
    round_trip(pair, payloads(30, seed=11))
    assert deflate._compressor is not None and pair.timers[DEFLATE] == 30.0


def test_with_ws_deflate_idle_unset_contexts_live_as_long_as_the_connection() -> None:
    pair, deflate, _, agreed = connected(f"permessage-deflate; {CHROME}", deflate_idle=None)
    assert agreed == "permessage-deflate; client_max_window_bits=12"
    round_trip(pair, payloads(10))
    assert deflate.contexts == 2
    assert DEFLATE not in pair.timers


def test_compression_takeover_shrinks_repeated_messages_and_the_default_still_compresses() -> None:
    """The price of the default, measured: a repeated 200-byte message."""
    message = '{"type":"next","id":"1","payload":{"data":{"ticker":{"symbol":"ACME","price":101.25}}}}' * 2
    sizes = {}
    for idle in (0.0, None):
        pair, _, _, _ = connected(f"permessage-deflate; {CHROME}", deflate_idle=idle)
        lengths = []
        for _ in range(3):
            start = len(pair.wire)
            pair.app_send(pair.cycle, {"type": "websocket.send", "text": message})
            lengths.append(len(pair.wire) - start)
            assert [e.data for e in pair.client_events()] == [message]
        sizes[idle] = lengths
    assert all(n < len(message) / 2 for n in sizes[0.0]), sizes
    assert sizes[None][2] < sizes[0.0][2], sizes
