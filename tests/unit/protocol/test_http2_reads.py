"""``HTTP2Connection.frames_end``: where the I/O layer cuts a read so that h2 gets at most
so many frames per event-loop turn. Whatever the reads' sizes and wherever they split the
frames (the preface, a frame header, a body), each cut falls on a frame's end, a piece
holds no more than the frames asked for, and the machine given the pieces one after the
other answers exactly as it answers the whole bytes in one read."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import pytest
from hyperframe.frame import Frame

from channelserver.protocol.events import StartApp, Write
from channelserver.protocol.http2 import PREFACE, HTTP2Connection

CLIENT = ("127.0.0.1", 50000)
SERVER = ("127.0.0.1", 8000)


def client_bytes(streams: int, body: int) -> bytes:
    """A client's preface, SETTINGS and ``streams`` POSTs of ``body`` bytes each."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for i in range(streams):
        sid = 1 + 2 * i
        fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/%d" % i)]
        client.send_headers(sid, fields)
        client.send_data(sid, b"z" * body, end_stream=True)
    return client.data_to_send()


def frame_ends(data: bytes) -> list[int]:
    """Every frame's end in ``data`` (a preface first)."""
    ends, i = [], len(PREFACE)
    while i < len(data):
        _, length = Frame.parse_frame_header(memoryview(data[i : i + 9]))
        i += 9 + length
        ends.append(i)
    assert i == len(data)
    return ends


def answers(pieces: list[bytes]) -> tuple[list[str], bytes]:
    """The streams started and all the machine wrote, given ``pieces`` one by one."""
    machine = HTTP2Connection(client=CLIENT, server=SERVER, max_concurrent_streams=1000)
    written = bytearray()
    paths = []
    for piece in [b"", *pieces]:
        for action in machine.receive_data(piece) if piece else machine.start():
            if isinstance(action, StartApp):
                paths.append(action.scope["path"])
            elif isinstance(action, Write):
                written += action.data
    return paths, bytes(written)


def cut(data: bytes, reads: list[int], per_turn: int) -> list[bytes]:
    """``data`` read in pieces of the ``reads`` sizes, each cut as the I/O layer cuts it."""
    machine = HTTP2Connection(client=CLIENT, server=SERVER, max_concurrent_streams=1000)
    machine.start()
    pieces = []
    start = 0
    for size in reads:
        unread = data[start : start + size]
        start += size
        while unread:
            end = machine.frames_end(unread, per_turn)
            assert 0 < end <= len(unread)
            pieces.append(unread[:end])
            machine.receive_data(unread[:end])
            unread = unread[end:]
    assert start >= len(data)
    return pieces


@pytest.mark.parametrize("seed", range(20))
def test_cuts_fall_on_frame_ends_and_change_nothing_the_machine_does(seed: int) -> None:
    rng = random.Random(seed)
    data = client_bytes(streams=rng.randint(1, 60), body=rng.choice([0, 1, 100, 1000]))
    reads = []
    left = len(data)
    while left > 0:
        reads.append(min(left, rng.choice([1, 7, 9, 24, 33, 500, 4096, 70000])))
        left -= reads[-1]
    per_turn = rng.choice([1, 2, 5, 100])
    pieces = cut(data, reads, per_turn)
    assert b"".join(pieces) == data
    ends = set(frame_ends(data))
    read_ends = {sum(reads[: i + 1]) for i in range(len(reads))}
    position = 0
    for piece in pieces:
        position += len(piece)
        assert position in ends or position in read_ends or position == len(PREFACE)
    assert answers(pieces) == answers([data])


def test_a_burst_in_one_read_is_given_per_turn_frames_at_a_time() -> None:
    data = client_bytes(streams=150, body=0)  # the preface, then 301 frames: SETTINGS, 150 x (HEADERS, DATA)
    ends = frame_ends(data)
    assert len(ends) == 301
    pieces = cut(data, [len(data)], per_turn=100)
    assert [len(p) for p in pieces] == [ends[99], ends[199] - ends[99], ends[299] - ends[199], ends[300] - ends[299]]


def test_a_read_that_ends_inside_a_frame_header_is_followed() -> None:
    machine = HTTP2Connection(client=CLIENT, server=SERVER)
    machine.start()
    data = client_bytes(streams=3, body=10)
    first_end = frame_ends(data)[0]
    machine.receive_data(data[: first_end + 4])  # the preface, SETTINGS, 4 bytes of a header
    rest = data[first_end + 4 :]
    ends = [end - first_end - 4 for end in frame_ends(data)[1:]]
    assert machine.frames_end(rest, 0) == ends[0]  # the frame begun earlier is finished first,
    assert machine.frames_end(rest, 1) == ends[1]  # uncounted
    assert machine.frames_end(rest, 2) == ends[2]
    assert machine.frames_end(rest[:3], 1) == 3  # not even that header's end yet
