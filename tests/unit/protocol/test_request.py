"""``read_plain_head`` reads what h11 would, or leaves the request to h11.

The property: for any bytes a client may send as one read, an :class:`HTTPConnection`
with the plain-head reader (the default) returns the same actions as one where h11 reads
every request (``fast_heads=False``): the same scope for each app, the same messages, the
same answers and refusals on the wire, the same log lines, timers and closes, and the
same again for the request after it on the same connection. The heads are drawn from
parts meant to reach every rule the reader keeps: h11's grammar (names, separators,
whitespace, line ends, obsolete folding, leading empty lines), the fields it hands to h11
(``transfer-encoding``, ``expect``, ``upgrade``, lengths), ``host`` counting, versions,
control characters in values (refused on both paths) and what follows the head.

A second property uses the same heads: split at any points, or sent a byte at a time, a
head is answered as when it came in one read, so the checks that refuse a head as soon as
it can no longer become one never refuse a head still arriving.
"""

from __future__ import annotations

import importlib
import itertools
import re
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channelserver.errors import ASGIProtocolError, ClientDisconnected
from channelserver.protocol.events import CloseTransport, Deliver, Log, StartApp, Upgrade, Write
from channelserver.protocol.http11 import KEEP_ALIVE, HTTPConnection
from channelserver.protocol.request import h11_internals, read_plain_head

CLIENT = ("127.0.0.1", 53122)
SERVER = ("127.0.0.1", 8000)
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"hi"}
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


def mostly(usual: list[bytes], odd: list[bytes], binary: int = 4, one_in: int = 8) -> st.SearchStrategy[bytes]:
    """One of ``usual``, except one time in ``one_in``: one of ``odd`` or a few random
    bytes. So a good part of the heads drawn are plain, and most others differ from a
    plain head in one or two places."""
    unusual = st.one_of(st.sampled_from(odd), st.binary(max_size=binary))
    return st.integers(1, one_in).flatmap(lambda i: unusual if i == 1 else st.sampled_from(usual))


methods = mostly(
    [b"GET", b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS", b"CONNECT"], [b"get", b"G ET", b"", b"M\x00"]
)
targets = mostly(
    [b"/", b"/a?b=c", b"*", b"http://h/x?y", b"/%7Ezz", b"/%zz", b"/ws/"], [b"/\xff", b"", b"/a b", b"/\x7f"], 6
)
versions = mostly(
    [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.1 ", b"HTTP/1.10", b"http/1.1", b""]
)
names = mostly(
    [b"Accept", b"user-agent", b"X-A", b"Cookie", b"Connection", b"connection", b"Content-Length", b"sec-x"],
    [b"Host", b"host", b"Transfer-Encoding", b"Expect", b"Upgrade", b"Bad Name", b"", b"A\x80", b"a:b"],
    4,
    16,
)
separators = mostly([b": ", b":", b":\t", b":  ", b": \t"], [b" :", b"\t:"], 2, 20)
plain_values = mostly(
    [
        b"a",
        b"127.0.0.1",
        b"0",
        b"00",
        b"close",
        b"Keep-Alive, Close",
        b"keep-alive",
        b"a  b",
        b"\x80\xff",
        b"a\tb",
        b"",
    ],
    [
        b"5",
        b"0, 0",
        b"0,5",
        b"-1",
        b"123456789012345678901",
        b"chunked",
        b"upgrade",
        b"100-continue",
        b"websocket",
        b"\x00",
        b"\x01\x7f",
        b"x\ry",
        b"x\ny",
    ],
    6,
    16,
)
#: The control characters h11's grammar lets through in a value (all but NUL, tab, LF, VT,
#: FF and CR): refused on both paths. One value in ten carries one, anywhere in it.
controls = st.sampled_from([bytes([c]) for c in (*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F)])
values = st.integers(1, 10).flatmap(
    lambda i: st.tuples(plain_values, controls, plain_values).map(b"".join) if i == 1 else plain_values
)
trailing_ows = st.sampled_from([b"", b"", b"", b" ", b"\t", b" \t"])
line_ends = mostly([b"\r\n"], [b"\n", b"\r", b"\r\n ", b"\r\n\t", b" \r\n"], 2, 20)
fields = st.lists(st.tuples(names, separators, values, trailing_ows, line_ends), max_size=5).map(
    lambda items: b"".join(name + sep + value + ows + end for name, sep, value, ows, end in items)
)
afters = mostly([b""], [b"hello", NEXT, b"GET /x HTTP/1.1\r\n", b"\r\n", b"\n"], 8)
#: The fields that decide between the plain reader and h11, in half the heads.
noted = st.one_of(
    st.just(b""),
    st.sampled_from(
        [
            b"Content-Length: 0\r\n",
            b"content-length: 00\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 0, 0\r\n",
            b"Content-Length: 0\r\nContent-Length: 0\r\n",
            b"Content-Length: 000000000000000000000\r\n",
            b"Content-Length: 123456789012345678901\r\n",
            b"Content-Length: +0\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Upgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n",
            b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n",
            b"Upgrade: websocket\r\nConnection: close, upgrade\r\n",
            b"Upgrade: websocket\r\nUpgrade: h2c\r\nConnection: upgrade\r\n",
            b"Upgrade: websocket\r\n",
            b"Upgrade: h2c\r\n",
            b"Upgrade:\r\n",
            b"Expect: 100-continue\r\n",
            b"Connection: close\r\n",
            b"Connection: keep-alive, CLOSE\r\n",
        ]
    ),
)
heads = st.builds(
    lambda lead, method, target, version, end, host, noted, fields, blank, after: (
        lead + method + b" " + target + b" " + version + end + host + noted + fields + blank + after
    ),
    mostly([b""], [b"\r\n", b"\n", b" "], 2),
    methods,
    targets,
    versions,
    line_ends,
    mostly([b"Host: a\r\n"], [b"", b"host:b \r\n", b"Host: a\r\nHost: a\r\n"], 0),
    noted,
    fields,
    mostly([b"\r\n"], [b"\n", b"\r\n\r\n"], 2),
    afters,
)
options = st.sampled_from([{}, {}, {"max_headers": 3}, {"max_incomplete_event_size": 48}, {"max_body_size": 0}])


def trace(
    data: bytes | list[bytes], fast: bool, opts: dict[str, Any], more: bytes = b"", before: bytes = b""
) -> list[Any]:
    """Everything the machine does, with an app that asks for each request's body and
    answers it: for ``before`` (an earlier read, answered first, so that what a request h11
    read leaves behind meets the next one), ``data`` (one read, or several in a row) and
    ``more`` (the next read, before any answer), then for one more request on the same connection, then for
    a shutdown, the keep-alive timer and the peer leaving."""
    machine = HTTPConnection(client=CLIENT, server=SERVER, fast_heads=fast, **opts)
    cycles: list[Any] = []
    record: list[Any] = []
    answered = 0

    def execute(actions: list[Any]) -> None:
        for action in actions:
            if type(action) is StartApp:
                cycles.append(action.cycle)
                record.append(("start", len(cycles) - 1, action.scope))
            elif type(action) is Deliver:
                record.append(("deliver", cycles.index(action.cycle), action.message))
            elif type(action) is Upgrade:
                request = action.request
                head = (request.method, request.target, request.http_version, list(request.headers))
                record.append(("upgrade", head, action.trailing_data))
            else:
                record.append(action)

    def answer() -> None:
        nonlocal answered
        while answered < len(cycles):  # an answer may start a pipelined request's app
            index = answered
            answered += 1
            record.append(("answered", index))
            execute(machine.app_wants_body(cycles[index]))
            try:
                execute(machine.app_send(cycles[index], START))
                execute(machine.app_send(cycles[index], BODY))
            except (ASGIProtocolError, ClientDisconnected) as exc:
                record.append(("raised", type(exc).__name__, str(exc)))

    execute(machine.start())
    if before:
        execute(machine.receive_data(before))
        answer()
    for read in [data] if isinstance(data, bytes) else data:
        execute(machine.receive_data(read))
    if more:
        execute(machine.receive_data(more))
    answer()
    if not machine.closed:
        execute(machine.receive_data(NEXT))
        answer()
    execute(machine.shutdown())
    execute(machine.timer_fired(KEEP_ALIVE))
    execute(machine.eof())
    return record


SAME = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


#: What the next read may bring: nothing, a body, a chunked body's end, a request.
MORE = [b"", b"hello", b"0\r\n\r\n", NEXT]
#: Requests h11 reads, on the connection before the drawn one.
BEFORE = [
    b"",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",  # a bare LF ends the head
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n",  # a head in two reads
]


@SAME
@given(heads, options, st.sampled_from(MORE), st.sampled_from(BEFORE))
def test_the_plain_head_reader_changes_nothing_h11_would_do(
    data: bytes, opts: dict[str, Any], more: bytes, before: bytes
) -> None:
    assert trace(data, True, opts, more, before) == trace(data, False, opts, more, before)


def seen(record: list[Any]) -> tuple[Any, ...]:
    """What the client and the apps see in a trace, whatever the reads the bytes came in:
    each app's scope and whole request body (in however many messages), the upgrades, the
    status of each answer, the closes and the number of warnings (their text names what
    was found first, which may depend on where the bytes were split)."""
    scopes = [item[2] for item in record if type(item) is tuple and item[0] == "start"]
    bodies = [b"" for _ in scopes]
    for item in record:
        if type(item) is tuple and item[0] == "deliver":
            bodies[item[1]] += item[2].get("body", b"")
    upgrades = [item[1] for item in record if type(item) is tuple and item[0] == "upgrade"]
    statuses = [item.data[9:12] for item in record if type(item) is Write and item.data[:9] == b"HTTP/1.1 "]
    closes = sum(type(item) is CloseTransport for item in record)
    warnings = sum(type(item) is Log and item.level == "warning" for item in record)
    return scopes, bodies, upgrades, statuses, closes, warnings


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads, st.lists(st.integers(1, 300), max_size=3))
def test_a_head_split_anywhere_is_answered_as_when_whole(data: bytes, cuts: list[int]) -> None:
    """A head that can no longer become valid is refused as soon as its bytes say so (a
    CR without LF, an HTTP/0.9 request line), while one still arriving is read on: split at
    any points, any head is answered as when it came in one read."""
    bounds = [0, *sorted({cut for cut in cuts if cut < len(data)}), len(data)]
    reads = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert seen(trace(reads, True, {})) == seen(trace(data, True, {}))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads)
def test_a_head_sent_a_byte_at_a_time_is_answered_as_when_whole(data: bytes) -> None:
    reads = [data[i : i + 1] for i in range(len(data))]
    assert seen(trace(reads, True, {})) == seen(trace(data, True, {}))


@SAME
@given(heads, st.integers(-3, 3))
def test_the_head_size_limit_is_h11s(data: bytes, delta: int) -> None:
    """A head as large as the limit is taken, a byte more is refused (431), in both; the
    limit is drawn around the size of the head that was drawn."""
    head = read_plain_head(data)
    opts = {"max_incomplete_event_size": max(1, (head.size if head else len(data)) + delta)}
    assert trace(data, True, opts) == trace(data, False, opts)


def test_the_head_size_is_counted_as_h11s_reader_counts_it() -> None:
    """Fields without a space after the colon count one byte more than they take, so this
    head's counted size passes its length, and limits between the two reach the plain
    reader's own size check."""
    data = b"GET / HTTP/1.1\r\nHost:a\r\nX:a\r\nY:a\r\nZ:a\r\n\r\n"
    head = read_plain_head(data)
    assert head is not None and head.size > len(data)
    for limit in range(len(data) - 2, head.size + 3):
        opts = {"max_incomplete_event_size": limit}
        assert trace(data, True, opts) == trace(data, False, opts), limit


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n",
        b"GET /a%20b?x=1 HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHOST:a\r\nConnection: Keep-Alive, Close \r\nX-Empty:\r\n\r\n",
        b"DELETE /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nx:\t\x80\xff\t\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",  # no body to continue to
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_plain_heads_are_read_without_h11(data: bytes) -> None:
    """The kinds of head read_plain_head exists for are read by it, and the result is
    h11's: the property above would pass trivially if the reader read nothing."""
    assert read_plain_head(data) is not None
    machine = HTTPConnection(client=CLIENT, server=SERVER)
    actions = machine.receive_data(data)
    assert machine.h11_unfed  # h11 never saw the bytes
    for more in MORE:
        assert trace(data, True, {}, more) == trace(data, False, {}, more)
    scope = next(action.scope for action in actions if type(action) is StartApp)
    assert all(name == name.lower() for name, _ in scope["headers"])


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # pipelined
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",  # a body follows
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",  # h11 merges
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",  # not WebSocket
        b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",  # h11 proposes a switch anyway
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no host
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n",  # obsolete folding
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",  # not whole
    ],
)
def test_other_heads_are_left_to_h11(data: bytes) -> None:
    assert read_plain_head(data) is None


def test_a_plain_websocket_handshake_is_read_and_handed_over_with_h11s_fields() -> None:
    data = (
        b"GET /ws/?a=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = read_plain_head(data)
    assert head is not None and head.websocket
    upgrades = {}
    for fast in (True, False):
        machine = HTTPConnection(client=CLIENT, server=SERVER, fast_heads=fast)
        machine.start()
        [upgrade] = [a for a in machine.receive_data(data) if type(a) is Upgrade]
        request = upgrade.request
        upgrades[fast] = (request.method, request.target, request.http_version, list(request.headers))
        assert upgrade.trailing_data == b"" and machine.closed
    assert upgrades[True] == upgrades[False]
    for more in MORE:
        assert trace(data, True, {}, more) == trace(data, False, {}, more)


# -- h11's private pieces, checked at import time -------------------------------------------


def test_h11_internals_are_found_in_the_installed_h11() -> None:
    found = h11_internals()
    assert set(found) == {"header_field", "request_line", "CONTENT_LENGTH_MAX_DIGITS"}
    assert isinstance(found["CONTENT_LENGTH_MAX_DIGITS"], int)


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("h11._abnf", "h11._abnf.header_field (a str)"),
        ("h11._headers", "h11._headers.CONTENT_LENGTH_MAX_DIGITS (a int)"),
    ],
)
def test_an_h11_without_the_pieces_used_is_one_clear_import_error(missing: str, named: str) -> None:
    def load(module: str) -> Any:
        if module == missing:
            raise ImportError(module)
        return importlib.import_module(module)

    with pytest.raises(ImportError, match=re.escape(named) + r", which h11 \S+ does not have; install the h11"):
        h11_internals(load)


def test_an_h11_whose_piece_changed_kind_is_refused() -> None:
    def load(module: str) -> Any:
        real = importlib.import_module(module)
        if module == "h11._abnf":
            return types.SimpleNamespace(header_field=re.compile("x"), request_line=real.request_line)
        return real

    with pytest.raises(ImportError, match=re.escape("h11._abnf.header_field (a str)")):
        h11_internals(load)
