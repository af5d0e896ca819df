"""The plain frame reader and writer (``frames.py``) do what wsproto would, or leave it to wsproto.

The property: for any bytes a client may send, split into reads at any points, with the
app's sends, closes and failures, timers, a shutdown and EOF in between, and frames that
come before the accept, a :class:`WebSocketConnection` with the plain frame path (the
default) returns the same actions as one where wsproto reads and writes every frame
(``fast_frames=False``): the same messages to the app, the same bytes on the wire (close
codes and reasons included), the same timers, log lines and transport closes, and the
same exceptions from the app's ``send()``.

The frames are drawn from parts meant to reach every rule the reader keeps: every opcode
(the undefined ones too), FIN and reserved bits, masked or not, each length in its
shortest form and in the 16-bit and 64-bit forms (RFC 6455 requires the shortest),
payloads of text (valid and not UTF-8, split inside a character), binary and close bodies
(valid and invalid codes, reasons not UTF-8), and sizes around 125/126, 65535/65536, the
reader's limits and the connection's ``max_size``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.events import Deliver, StartApp, Write
from channelserver.protocol.frames import FAST_MAX, WAIT_MAX, FrameReader, plain_frame
from channelserver.protocol.websocket import CLOSE, HANDSHAKE, PING, PONG, WebSocketConnection

CLIENT = ("127.0.0.1", 53122)
SERVER = ("127.0.0.1", 8000)
REQUEST = h11.Request(
    method="GET",
    target="/ws/",
    headers=[
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ],
)
KEY = b"\x37\xfa\x21\x3d"


def masked(key: bytes, payload: bytes) -> bytes:
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return bytes(a ^ b for a, b in zip(payload, stream, strict=True)) if n < 64 else _xor(payload, stream)


def _xor(payload: bytes, stream: bytes) -> bytes:
    n = len(payload)
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def build(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    form: str = "minimal",
    key: bytes = KEY,
) -> bytes:
    """One frame by hand (RFC 6455 5.2): ``form`` is the length's form, ``minimal`` or
    ``16`` or ``64`` whatever the size (or ``64+msb``, the top bit of the 64-bit form set)."""
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if form == "minimal":
        form = "7" if n < 126 else "16" if n < 65536 else "64"
    if form == "7":
        head = bytes([first, mbit | n])
    elif form == "16" and n < 65536:
        head = bytes([first, mbit | 126]) + n.to_bytes(2, "big")
    else:
        value = n | (1 << 63 if form == "64+msb" else 0)
        head = bytes([first, mbit | 127]) + value.to_bytes(8, "big")
    return head + key + masked(key, payload) if mask else head + payload


# -- the inputs ---------------------------------------------------------------------------

#: Sizes around the length forms, the reader's limits and the sizes max_size is drawn from.
SIZES = [0, 1, 5, 6, 124, 125, 126, 127, 4087, 4088, 4089, 4096, 65529, 65535, 65536, 70000]
#: max_size options: the default, and values around the sizes above.
MAX_SIZES = [1 << 20, 0, 5, 6, 125, 126, 4088, 65535, 65536]
#: Byte strings that are not UTF-8, or not yet: truncated, a lone continuation byte, a
#: surrogate, an overlong form, a code point over U+10FFFF, a byte never in UTF-8.
NOT_UTF8 = [b"\xff", b"\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xf5", b"\xe2"]
CLOSE_CODES = [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1015, 999, 2999, 3000, 4999, 5000, 0]


#: UTF-8 texts: ASCII, 2-, 3- and 4-byte characters (a frame cut inside one is cut there).
TEXTS = [b"", b"a", b"hello", "\u00e9".encode(), "\u20acuro".encode(), "\U0001f600".encode(), b'{"id":"1"}']
#: What large payloads are made of.
UNITS = [b"a", b"ab", b"\x00\xff\x10", "\u00e9".encode(), "\u20ac".encode(), "\U0001f600".encode()]


# The drawing below uses strategies made once (a strategy made per draw costs hypothesis
# more than the whole run it draws for).
ONE_IN_4 = st.integers(0, 3)
ONE_IN_6 = st.integers(0, 5)
ONE_IN_8 = st.integers(0, 7)
INDEX = st.integers(0, 1 << 17)
UNIT = st.sampled_from(UNITS)
TEXT = st.sampled_from(TEXTS)
BAD = st.sampled_from(NOT_UTF8)
SMALL_BINARY = st.binary(max_size=8)
OPCODE = st.integers(0, 15)
RSV = st.integers(1, 7)
MASK_KEY = st.binary(min_size=4, max_size=4)
DATA_OPCODE = st.sampled_from([0x1, 0x2])
CONTROL_OPCODE = st.sampled_from([0x9, 0xA])
PING_PAYLOAD = st.sampled_from([b"", b"p", b"ping", b"p" * 125, b"p" * 126])
SIZE = st.sampled_from(SIZES)
#: What may be odd about a frame's header.
ODDITIES = st.lists(st.sampled_from(["opcode", "fin", "rsv", "mask", "16", "64", "64+msb", "key"]), max_size=2)
KIND = st.sampled_from(["text", "binary", "text", "binary", "sized", "fragmented", "ping", "pong", "close"])
CUTS = st.lists(INDEX, min_size=1, max_size=3)
GOOD_CODE = st.sampled_from([1000, 1001, 3000, 4999])
ANY_CODE = st.sampled_from(CLOSE_CODES)
ODD_REASON = st.sampled_from([b"", b"r" * 123, b"r" * 124, *NOT_UTF8])


def sized(draw: Any, n: int) -> bytes:
    """``n`` bytes: a unit repeated, with sometimes a byte sequence that is not UTF-8."""
    unit = draw(UNIT)
    data = (unit * (n // len(unit) + 1))[:n]
    if n and draw(ONE_IN_4) == 0:
        i = draw(INDEX) % n
        data = (data[:i] + draw(BAD) + data[i:])[:n]
    return data


def text(draw: Any) -> bytes:
    """UTF-8, or one time in six, UTF-8 with a sequence that is not in it."""
    data = draw(TEXT) + draw(TEXT)
    if draw(ONE_IN_6) == 0:
        data += draw(BAD) + draw(TEXT)
    return data


def close_body(draw: Any) -> bytes:
    """A code and a reason; one time in three, an odd one (no code, one byte, a code RFC
    6455 does not allow on the wire, a reason not UTF-8 or too long)."""
    roll = draw(ONE_IN_6)
    if roll > 1:
        return draw(GOOD_CODE).to_bytes(2, "big") + draw(TEXT)
    if roll == 1:
        return draw(st.sampled_from([b"", b"\x03"]))
    return draw(ANY_CODE).to_bytes(2, "big") + draw(ODD_REASON)


def one_frame(draw: Any, opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """The frame; one time in eight, with one or two odd things about its header."""
    odd = draw(ODDITIES) if draw(ONE_IN_8) == 0 else []
    form = next((o for o in odd if o in ("16", "64", "64+msb")), "minimal")
    return build(
        draw(OPCODE) if "opcode" in odd else opcode,
        payload,
        fin=fin != ("fin" in odd),
        rsv=draw(RSV) if "rsv" in odd else 0,
        mask="mask" not in odd,
        form=form,
        key=draw(MASK_KEY) if "key" in odd else KEY,
    )


def message(draw: Any, max_size: int) -> list[bytes]:
    """The frames of one message (whole, or fragmented with control frames between), or
    a ping, a pong or a close."""
    kind = draw(KIND)
    if kind in ("ping", "pong"):
        return [one_frame(draw, 0x9 if kind == "ping" else 0xA, draw(PING_PAYLOAD))]
    if kind == "close":
        return [one_frame(draw, 0x8, close_body(draw))]
    if kind == "text":
        return [one_frame(draw, 0x1, text(draw))]
    if kind == "binary":
        return [one_frame(draw, 0x2, draw(SMALL_BINARY))]
    if kind == "sized":
        size = draw(SIZE) if draw(ONE_IN_4) else max(0, max_size - 1 + draw(INDEX) % 3)
        return [one_frame(draw, draw(DATA_OPCODE), sized(draw, min(size, 70000)))]
    opcode = draw(DATA_OPCODE)
    whole = text(draw) if opcode == 0x1 else draw(SMALL_BINARY)
    if draw(ONE_IN_4) == 0:
        whole += sized(draw, draw(SIZE))
    cuts = sorted(c % (len(whole) + 1) for c in draw(CUTS))
    parts = [whole[a:b] for a, b in itertools.pairwise([0, *cuts, len(whole)])]
    out = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        out.append(one_frame(draw, opcode if index == 0 else 0x0, part, fin=last))
        if not last and draw(ONE_IN_4) == 0:
            out.append(one_frame(draw, draw(CONTROL_OPCODE), draw(TEXT)))
    return out


#: App sends: text and bytes of sizes around the length forms.
APP_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537]
app_messages = st.one_of(
    st.builds(lambda t: {"type": "websocket.send", "text": t}, st.text(max_size=6)),
    st.builds(lambda b: {"type": "websocket.send", "bytes": b}, st.binary(max_size=6)),
    st.builds(
        lambda n, u, as_text: (
            {"type": "websocket.send", "text": (u * (n // len(u.encode()) + 1))[: max(0, n)]}
            if as_text
            else {"type": "websocket.send", "bytes": (u.encode() * n)[:n]}
        ),
        st.sampled_from(APP_SIZES),
        st.text(min_size=1, max_size=2),
        st.booleans(),
    ),
    st.builds(
        lambda pad, t: {"type": "websocket.send", "text": "a" * max(0, pad - len(t.encode())) + t},
        st.sampled_from(APP_SIZES),
        st.text(max_size=2),
    ),
)

#: What may happen after a read (one time in three): the app sending or closing or
#: failing, a timer firing, a shutdown, the peer leaving, the app receiving its disconnect.
STEP = st.one_of(
    st.tuples(st.just("send"), app_messages),
    st.sampled_from(
        [
            ("close", 1000),
            ("close", 4000),
            ("returned",),
            ("failed",),
            ("timer", PING),
            ("timer", PONG),
            ("timer", CLOSE),
            ("timer", HANDSHAKE),
            ("shutdown",),
            ("eof",),
            ("receive",),
        ]
    ),
)
NOTHING = ("none",)


@dataclass
class Case:
    """One run: the reads, what happens after each, and the connection's options."""

    reads: list[bytes]
    after: list[tuple[Any, ...]] = field(default_factory=list)
    #: The app accepts before the read of this index (reads before it are held).
    accept_at: int = 0
    max_size: int = 1 << 20
    ping_interval: float | None = None


MAX_SIZE = st.sampled_from(MAX_SIZES)
MESSAGES = st.integers(0, 5)
ENDING = st.integers(0, 7)
TAIL = st.binary(max_size=12)
NEAR = st.integers(1, 14)
PING_INTERVAL = st.sampled_from([None, 20.0])


@st.composite
def cases(draw: Any) -> Case:
    max_size = draw(MAX_SIZE)
    frames = [f for _ in range(draw(MESSAGES)) for f in message(draw, max_size)]
    ending = draw(ENDING)
    if ending == 0:
        frames.append(draw(TAIL))  # bytes that may be no frame at all
    elif ending == 1:
        frames.append(one_frame(draw, 0x8, close_body(draw)))
    data = b"".join(frames)
    if len(data) < 150 and draw(ONE_IN_6) == 0:
        cuts = list(range(1, len(data)))  # one byte at a time
    else:
        # Cuts mostly in or just after a frame's header, where the reader decides.
        starts = [0, *itertools.accumulate(len(f) for f in frames)]
        cuts = []
        for _ in range(draw(MESSAGES)):
            if draw(ONE_IN_4):
                cuts.append(starts[draw(INDEX) % len(starts)] + draw(NEAR))
            else:
                cuts.append(draw(INDEX) % (len(data) + 1))
    bounds = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    reads = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    after = [draw(STEP) if draw(ONE_IN_4) < 1 else NOTHING for _ in reads]
    accept_at = draw(INDEX) % (len(reads) + 1) if draw(ONE_IN_4) == 0 else 0
    return Case(reads, after, accept_at, max_size, draw(PING_INTERVAL))


# -- the two runs -----------------------------------------------------------------------------


def trace(case: Case, fast: bool) -> list[Any]:
    """Everything the connection does for ``case``, then for the peer leaving."""
    conn = WebSocketConnection(
        REQUEST,
        b"",
        client=CLIENT,
        server=SERVER,
        max_size=case.max_size,
        ping_interval=case.ping_interval,
        ping_timeout=10.0,
        per_message_deflate=False,
        fast_frames=fast,
    )
    record: list[Any] = []
    disconnected = False

    def execute(actions: list[Any]) -> None:
        nonlocal disconnected
        for action in actions:
            if type(action) is StartApp:
                record.append(("start", action.scope))
            elif type(action) is Deliver:
                record.append(("deliver", action.message))
                disconnected = disconnected or action.message["type"] == "websocket.disconnect"
            else:
                record.append(action)

    def app(call: Any, *args: Any) -> None:
        try:
            execute(call(conn.cycle, *args))
        except (ASGIProtocolError, ClientDisconnected) as exc:
            record.append(("raised", type(exc).__name__, str(exc)))

    execute(conn.start())
    for index, data in enumerate(case.reads):
        if index == case.accept_at:
            app(conn.app_send, {"type": "websocket.accept"})
        execute(conn.receive_data(data))
        step = case.after[index] if index < len(case.after) else ("none",)
        kind = step[0]
        if kind == "send":
            app(conn.app_send, step[1])
        elif kind == "close":
            app(conn.app_send, {"type": "websocket.close", "code": step[1]})
        elif kind == "returned":
            app(conn.app_returned, None)
        elif kind == "failed":
            execute(conn.app_failed(conn.cycle))
        elif kind == "timer":
            execute(conn.timer_fired(step[1]))
        elif kind == "shutdown":
            execute(conn.shutdown())
        elif kind == "eof":
            execute(conn.eof())
        elif kind == "receive" and disconnected:
            conn.app_got_disconnect(conn.cycle)
    if case.accept_at >= len(case.reads):
        app(conn.app_send, {"type": "websocket.accept"})
    app(conn.app_send, {"type": "websocket.send", "text": "last"})
    execute(conn.eof())
    return record


PROOF = settings(
    max_examples=4000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

TEXT5 = b"hello"


@PROOF
@given(cases())
# The bug this proof was written for: a 5-byte text frame whose length uses the 16-bit or
# the 64-bit form was delivered; wsproto fails it with 1002.
@example(Case([build(0x1, TEXT5, form="16")]))
@example(Case([build(0x1, TEXT5, form="64")]))
@example(Case([build(0x2, b"x" * 300, form="64")]))
@example(Case([build(0x1, TEXT5, form="16")[:3], build(0x1, TEXT5, form="16")[3:]]))
@example(
    Case(
        [build(0x1, b"a" * 200 + b"\xff")[:100], build(0x1, b"a" * 200 + b"\xff")[100:]],
        [("send", {"type": "websocket.send", "text": "x"})],
    )
)
@example(Case([build(0x1, b"ab\xe2")[:8], build(0x1, b"ab\xe2")[8:]], [("eof",)]))
@example(Case([build(0xB, b"x", form="16")[:3], b"\x00"], [("send", {"type": "websocket.send", "text": "x"})]))
@example(
    Case([build(0x3, b"x" * 200)[:3], build(0x3, b"x" * 200)[3:]], [("send", {"type": "websocket.send", "text": "x"})])
)
@example(Case([build(0x9, b"x" * 126)[:2], b""], [("send", {"type": "websocket.send", "text": "x"})]))
@example(Case([build(0x2, b"x" * 7)], max_size=6))
@example(Case([build(0x1, "é".encode() * 4)], max_size=6))
@example(Case([build(0x2, b"x" * 10)[:8], build(0x2, b"x" * 10)[8:]], [("close", 1000)]))
@example(Case([build(0x1, b"a", fin=False), build(0x1, b"b")]))
@example(Case([build(0x1, b"a", fin=False), build(0x9, b"p"), build(0x0, b"b"), build(0x1, b"c")]))
@example(Case([build(0x1, b"x"), build(0x1, b"y")], accept_at=1))
@example(Case([build(0x8, (1000).to_bytes(2, "big")) + build(0x1, b"x")]))
# A 16-bit length cut in two whose low byte, read as a frame's first byte, starts a binary
# frame: the reader must hold the length bytes, not read a frame from the middle of one.
@example(
    Case([build(0x2, b"x" * 386, key=b"\x85\x01\x02\x03")[:3], build(0x2, b"x" * 386, key=b"\x85\x01\x02\x03")[3:]])
)
def test_the_plain_frame_path_changes_nothing_wsproto_would_do(case: Case) -> None:
    assert trace(case, True) == trace(case, False)


@pytest.mark.parametrize("size", [0, 1, 124, 125, 126, 127, 65534, 65535, 65536, 65537, 100000])
def test_plain_frames_are_wsprotos_bytes(size: int) -> None:
    """Text and bytes of each size around the length forms, as wsproto frames them."""
    text = "\u00e9" * (size // 2) + "a" * (size % 2)
    assert len(text.encode()) == size
    assert plain_frame(0x81, text.encode()) == Connection(ConnectionType.SERVER).send(TextMessage(data=text))
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    assert plain_frame(0x82, data) == Connection(ConnectionType.SERVER).send(BytesMessage(data=data))


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)), st.sampled_from([0, 119, 60000, 65529, 65530]))
def test_plain_frames_are_wsprotos_bytes_for_any_payload(payload: str | bytes, pad: int) -> None:
    ws = Connection(ConnectionType.SERVER)
    if isinstance(payload, str):
        payload = "a" * pad + payload
        assert plain_frame(0x81, payload.encode()) == ws.send(TextMessage(data=payload))
    else:
        payload = b"a" * pad + payload
        assert plain_frame(0x82, payload) == ws.send(BytesMessage(data=payload))


# -- the reader reads what it exists for (else the proof would pass trivially) -------------


class Recorder:
    def __init__(self, limit: int = 1 << 20, controls: bool = False) -> None:
        self.delivered: list[str | bytes] = []
        self.handed: list[bytes] = []
        self.closes: list[bytes] = []
        self.controls: list[tuple[int, bytes]] = []
        self.takes_controls = controls
        self.reader = FrameReader(limit, self)

    def frame_control(self, first: int, payload: bytes) -> bool:
        if not self.takes_controls:
            return False
        self.controls.append((first, payload))
        return True

    def frame_message(self, payload: str | bytes) -> bool:
        self.delivered.append(payload)
        return True

    def frame_close(self, payload: bytes) -> bool:
        self.closes.append(payload)
        return True

    def frame_to_wsproto(self, data: bytes) -> bool:
        self.handed.append(data)
        return False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (build(0x1, TEXT5), "hello"),
        (build(0x1, b""), ""),
        (build(0x2, b"\x00\xff"), b"\x00\xff"),
        (build(0x1, "h\u00e9\U0001f600".encode()), "h\u00e9\U0001f600"),
        (build(0x2, b"x" * 126), b"x" * 126),
        (build(0x1, b"y" * FAST_MAX), "y" * FAST_MAX),
    ],
)
def test_whole_plain_frames_are_read_without_wsproto(data: bytes, message: str | bytes) -> None:
    """Whole, or (binary, or text cut inside its first two bytes) in pieces."""
    splits = [[data], [data[:1], data[1:]]]
    if isinstance(message, bytes):
        splits.append([data[: len(data) // 2], data[len(data) // 2 :]])
    for reads in splits:
        got = Recorder()
        for piece in reads:
            got.reader.feed(piece)
        assert (got.delivered, got.handed) == ([message], []), reads


def test_a_small_binary_frame_in_pieces_waits_and_is_read_without_wsproto() -> None:
    data = build(0x2, b"z" * (WAIT_MAX - 8))
    assert len(data) == WAIT_MAX
    got = Recorder()
    for i in range(len(data)):
        got.reader.feed(data[i : i + 1])
    assert (got.delivered, got.handed) == ([b"z" * (WAIT_MAX - 8)], [])


@pytest.mark.parametrize(
    "data",
    [build(0x3, TEXT5, form="16"), build(0xB, TEXT5), build(0x9, b"x" * 126), build(0xA, b"x" * 70000)],
    ids=["opcode-3", "opcode-11", "ping-of-126-bytes", "pong-of-70000-bytes"],
)
def test_frames_wsproto_fails_on_two_bytes_are_handed_over_at_once_with_all_that_follows(data: bytes) -> None:
    """wsproto fails these before it reads any length byte (and the connection closes):
    they are not held to read their length, and what follows goes with them."""
    got = Recorder()
    got.reader.feed(data[:2])
    assert got.handed == [data[:2]], "not held"
    after = build(0x1, b"after")
    got = Recorder()
    got.reader.feed(data + after)
    assert (got.delivered, got.handed) == ([], [data + after])


@pytest.mark.parametrize(
    "data",
    [
        build(0x1, TEXT5, form="16"),
        build(0x1, TEXT5, form="64"),
        build(0x2, b"x" * 300, form="64"),
        build(0x2, b"x" * 70000, form="64+msb"),
        build(0x1, TEXT5, mask=False),
        build(0x1, TEXT5, rsv=4),
        build(0x2, TEXT5, rsv=1),
        build(0x1, TEXT5, fin=False) + build(0x1, TEXT5),
    ],
    ids=[
        "16-bit-length",
        "64-bit-length",
        "64-bit-length-of-300",
        "64-bit-length-top-bit",
        "unmasked",
        "rsv1",
        "rsv3",
        "new-message-inside-a-fragmented-one",
    ],
)
def test_frames_wsproto_fails_once_it_read_their_length_are_handed_over(data: bytes) -> None:
    """Not read here, whole or in pieces: wsproto gets each frame, and fails it."""
    for reads in ([data], [data[:3], data[3:]], [data[i : i + 1] for i in range(min(len(data), 300))]):
        got = Recorder()
        for piece in reads:
            got.reader.feed(piece)
        assert got.delivered == []
        assert b"".join(got.handed) == b"".join(reads)


@pytest.mark.parametrize(
    ("data", "limit"),
    [
        (build(0x1, b"a", fin=False) + build(0x0, b"b"), 1 << 20),
        (build(0x9, b"ping"), 1 << 20),
        (build(0x2, b"x" * 11), 10),
        (build(0x2, b"x" * (FAST_MAX + 1)), 1 << 20),
        (build(0x1, b"\xff"), 1 << 20),
    ],
    ids=["fragmented", "ping", "over-max-size", "over-fast-max", "not-utf8"],
)
def test_other_frames_go_to_wsproto_one_by_one(data: bytes, limit: int) -> None:
    after = build(0x1, b"after")
    got = Recorder(limit)
    got.reader.feed(data + after)
    assert b"".join(got.handed) == data
    assert got.delivered == ["after"]


def test_a_whole_ping_or_pong_goes_to_the_control_callback_outside_a_fragmented_message() -> None:
    got = Recorder(controls=True)
    got.reader.feed(build(0x9, b"keepalive") + build(0xA, b"") + build(0x1, b"after"))
    assert got.controls == [(0x89, b"keepalive"), (0x8A, b"")]
    assert got.handed == [] and got.delivered == ["after"]
    inside = build(0x1, b"a", fin=False) + build(0x9, b"p") + build(0x0, b"b")
    got = Recorder(controls=True)
    got.reader.feed(inside)
    assert got.controls == []  # inside a fragmented message: wsproto reads it, in order
    assert b"".join(got.handed) == inside


def test_the_proof_draws_frames_the_reader_reads() -> None:
    """A few drawn streams, checked to reach the reader's own path: the property above
    compares something."""
    seen = 0
    for data in [build(0x1, TEXT5) * 3, build(0x2, b"x" * 200) + build(0x9, b"") + build(0x1, b"\xc3\xa9")]:
        got = Recorder()
        got.reader.feed(data)
        seen += len(got.delivered)
        assert trace(Case([data]), True) == trace(Case([data]), False)
    assert seen == 5


def test_with_fast_frames_off_wsproto_reads_and_writes_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch the proof turns is real: off, no frame is read or written here."""
    conn = WebSocketConnection(REQUEST, b"", client=CLIENT, server=SERVER, ping_interval=None, fast_frames=False)
    conn.start()
    conn.app_send(conn.cycle, {"type": "websocket.accept"})
    ws = conn.ws
    assert ws is not None
    fed: list[bytes] = []
    sent: list[Any] = []
    real_send = ws.send
    monkeypatch.setattr(ws, "receive_data", fed.append)
    monkeypatch.setattr(ws, "send", lambda event: sent.append(event) or real_send(event))
    data = build(0x1, TEXT5) + build(0x2, b"x" * 300)
    assert conn.receive_data(data) == []
    assert fed == [data]
    [write] = conn.app_send(conn.cycle, {"type": "websocket.send", "text": "hi"})
    assert [type(e) for e in sent] == [TextMessage]
    assert write == Write(plain_frame(0x81, b"hi"))


@pytest.mark.parametrize(
    ("payload", "read_here"),
    [
        (b"", True),  # no code: 1005 to the app, an empty close echoed
        ((1000).to_bytes(2, "big"), True),
        ((1001).to_bytes(2, "big") + "bye é".encode(), True),
        ((4999).to_bytes(2, "big") + b"x" * 123, True),
        ((3000).to_bytes(2, "big"), True),
        (b"\x03", False),  # one byte: wsproto fails it (1002)
        ((999).to_bytes(2, "big"), False),
        ((1004).to_bytes(2, "big"), False),  # reserved
        ((1005).to_bytes(2, "big"), False),  # local only
        ((1006).to_bytes(2, "big"), False),
        ((1016).to_bytes(2, "big"), False),  # unknown below 3000
        ((5000).to_bytes(2, "big"), False),
        ((1000).to_bytes(2, "big") + b"\xff", False),  # reason not UTF-8: 1007
    ],
)
def test_a_whole_close_frame_is_read_here_when_wsproto_would_read_it_without_error(
    payload: bytes, read_here: bool
) -> None:
    """A close frame the reader hands to the connection is read as wsproto reads it, the
    same actions both ways; one wsproto fails goes to wsproto."""
    data = build(0x1, TEXT5) + build(0x8, payload)
    assert trace(Case([data]), True) == trace(Case([data]), False)
    conn = WebSocketConnection(REQUEST, b"", client=CLIENT, server=SERVER, ping_interval=None)
    conn.start()
    conn.app_send(conn.cycle, {"type": "websocket.accept"})
    ws = conn.ws
    assert ws is not None
    handed: list[bytes] = []
    real = ws.receive_data
    ws.receive_data = lambda data: handed.append(data) or real(data)  # type: ignore[method-assign]
    actions = conn.receive_data(data)
    assert (handed == []) is read_here
    if read_here:
        [disconnect] = [
            a.message for a in actions if type(a) is Deliver and a.message["type"] == "websocket.disconnect"
        ]
        assert type(disconnect["code"]) is int
        assert Write(plain_frame(0x88, payload)) in actions, "the close is echoed"
        assert conn.closed
