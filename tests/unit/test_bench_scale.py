"""The pure parts of ``make bench-scale`` (bench/scale.py, bench/scale_client.py): /proc
parsing, the tables, the options, and the client's handshake, frames and inflation."""

from __future__ import annotations

import dataclasses
import os
import socket
import zlib
from typing import Any

import pytest

from bench import scale
from bench import scale_client as sc


# -- /proc ----------------------------------------------------------------------------------
def test_stat_fields_are_counted_after_the_last_parenthesis() -> None:
    # A command name with spaces and parentheses, as a thread may name itself.
    text = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 1000 0 0 0 321 45 0 0 20 0 3 0 100 1000 200\n"
    assert scale.parse_stat(text) == scale.ProcStat(pid=4242, ppid=17, utime=321, stime=45)


def test_rss_is_read_from_vmrss_in_bytes() -> None:
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t   51234 kB\nThreads:\t3\n"
    assert scale.parse_rss(status) == 51234 * 1024
    assert scale.parse_rss("Name:\tzombie\nState:\tZ (zombie)\n") == 0


def stat(pid: int, ppid: int, utime: int = 0, stime: int = 0) -> scale.ProcStat:
    return scale.ProcStat(pid, ppid, utime, stime)


def test_tree_finds_every_descendant_and_nothing_else() -> None:
    stats = {s.pid: s for s in (stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 11), stat(20, 1), stat(30, 10))}
    assert sorted(scale.tree([10], stats)) == [10, 11, 12, 30]
    assert sorted(scale.tree([12, 20], stats)) == [12, 20]
    assert scale.tree([99], stats) == []


def test_tree_readings_of_this_process() -> None:
    assert scale.tree_rss([os.getpid()]) > 1024 * 1024
    assert scale.tree_cpu([os.getpid()]) > 0


# -- tables ---------------------------------------------------------------------------------
def test_markdown_table_aligns_numbers_right() -> None:
    text = scale.markdown_table(["server", "KiB/conn"], [["channelserver", "12.5"], ["daphne", "30.1"]])
    assert text.splitlines() == [
        "| server        | KiB/conn |",
        "|---------------|---------:|",
        "| channelserver |     12.5 |",
        "| daphne        |     30.1 |",
    ]


def result(server: str, kib: float | None, failed_at: int | None = None, error: str | None = None) -> dict[str, Any]:
    steps = [] if kib is None else [{"n": 1000, "kib_per_conn": kib}]
    out: dict[str, Any] = {"server": server, "steps": steps, "failed_at": failed_at}
    if error:
        out["error"] = error
    return out


def test_workload_table_reports_failures_and_the_ratio_to_the_best_peer() -> None:
    columns = [
        scale.Column("KiB/conn @1,000", scale.step_value(1000, "kib_per_conn"), better=-1),
        scale.Column("KiB/conn @5,000", scale.step_value(5000, "kib_per_conn"), better=-1),
    ]
    results = {
        "channelserver": result("channelserver", 15.0),
        "daphne": result("daphne", 30.0),
        "uvicorn": result("uvicorn", 20.0, failed_at=3412),
        "granian": result("granian", None, error="granian exited with 1"),
    }
    rows = scale.workload_table(columns, results, ["channelserver", "daphne", "uvicorn", "granian"]).splitlines()
    assert [cell.strip() for cell in rows[2].split("|")[1:-1]] == ["channelserver", "15.0", "-"]
    assert [cell.strip() for cell in rows[4].split("|")[1:-1]] == ["uvicorn", "20.0", "failed at 3,412"]
    assert [cell.strip() for cell in rows[5].split("|")[1:-1]] == ["granian", "error", "error"]
    assert [cell.strip() for cell in rows[6].split("|")[1:-1]] == ["channelserver ÷ best peer", "0.75x (uvicorn)", ""]


def test_higher_is_better_columns_compare_with_the_highest_peer() -> None:
    column = scale.Column("opened/s", lambda r: r["rate"], better=1)
    results = {"channelserver": {"rate": 900.0}, "daphne": {"rate": 300.0}, "uvicorn": {"rate": 1200.0}}
    assert scale.ratio_cells([column], results) == ["0.75x (uvicorn)"]
    assert scale.ratio_cells([column], {"channelserver": {"rate": 900.0}}) is None


def test_fanout_summary_counts_missed_deliveries_and_cpu_per_delivery() -> None:
    mutations = [
        {"delivered": 100, "last_s": 0.050, "ok": True, "answer": ""},
        {"delivered": 100, "last_s": 0.070, "ok": True, "answer": ""},
        {"delivered": 97, "last_s": 0.900, "ok": True, "answer": ""},
    ]
    step = scale.summarize_fanout(100, {"elapsed": 1.5}, {"subscribers": 100, "mutations": mutations}, 0.0297, 0.0)
    assert step["missed"] == 3
    assert step["complete"] == 2
    assert step["p50_ms"] == pytest.approx(50.0)
    assert step["p99_ms"] == pytest.approx(70.0)
    assert step["us_per_delivery"] == pytest.approx(100.0)


def test_options() -> None:
    args = scale.parse_args(["--quick", "--n", "10,20", "--servers", "daphne,channelserver", "--workloads", "idle"])
    assert args.plan.ns == (10, 20)
    assert args.plan.storm_n == 20
    assert args.servers == ["daphne", "channelserver"]
    assert args.workloads == ["idle"]
    assert scale.parse_args([]).plan == scale.FULL
    for bad in (["--n", "20,10"], ["--servers", "nginx"], ["--workloads", "busy"]):
        with pytest.raises(SystemExit):
            scale.parse_args(bad)


def test_server_order_rotates() -> None:
    names = ["a", "b", "c"]
    assert [scale.rotated(names, turn) for turn in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_every_peer_binds_loopback_on_the_given_port() -> None:
    for peer in scale.PEERS.values():
        argv = " ".join(peer.argv(41234, 2))
        assert "127.0.0.1" in argv and "41234" in argv and scale.APP in argv
        if not peer.separate:
            assert "--workers 2" in argv


# -- the client -----------------------------------------------------------------------------
def test_handshake_offers_deflate_as_chrome_does() -> None:
    request = sc.handshake_request("/ws/idle", 8000, deflate=True, subprotocol="graphql-transport-ws")
    assert request.startswith(b"GET /ws/idle HTTP/1.1\r\n")
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in request
    assert b"\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n" in request
    assert request.endswith(b"\r\n\r\n")
    assert b"Extensions" not in sc.handshake_request("/ws/idle", 8000)


def test_response_head_and_negotiated_deflate() -> None:
    status, headers = sc.parse_response_head(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + sc.WS_ACCEPT + b"\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
    )
    assert status == 101
    assert headers["sec-websocket-accept"].encode() == sc.WS_ACCEPT
    assert sc.negotiated_deflate(headers["sec-websocket-extensions"]) == sc.Deflate(True, 12)
    assert sc.negotiated_deflate("permessage-deflate; client_max_window_bits=15") == sc.Deflate(False, 15)
    assert sc.negotiated_deflate(None) is None
    assert sc.negotiated_deflate("x-webkit-deflate-frame") is None
    with pytest.raises(sc.ProtocolError):
        sc.parse_response_head(b"SSH-2.0-OpenSSH")


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes([first, size]) + payload
    if size < 65536:
        return bytes([first, 126]) + size.to_bytes(2, "big") + payload
    return bytes([first, 127]) + size.to_bytes(8, "big") + payload


def test_frames_of_every_length_split_anywhere() -> None:
    payloads = [b"", b"x" * 125, b"y" * 126, b"z" * 70000]
    stream = b"".join(server_frame(sc.OP_BINARY, p) for p in payloads) + b"\x81"
    frames, rest = sc.split_frames(stream)
    assert [f.payload for f in frames] == payloads
    assert rest == b"\x81"
    for cut in (1, 2, 3, 130, 70005):
        reader = sc.MessageReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:-1])
        assert [payload for _, payload in got] == payloads


def test_client_frames_are_masked_and_read_back() -> None:
    frame = sc.client_frame(sc.OP_TEXT, b"hello" * 40)
    assert frame[1] & 0x80
    assert frame[4:8] == sc.MASK
    (parsed,), rest = sc.split_frames(frame)
    assert parsed == sc.Frame(True, False, sc.OP_TEXT, b"hello" * 40) and rest == b""
    assert sc.mask(sc.mask(b"abcdefg")) == b"abcdefg"


def deflate_messages(messages: list[bytes], *, takeover: bool, bits: int = 15) -> list[bytes]:
    """Compressed payloads as a server writes them (RFC 7692: sync flush, tail removed)."""
    out = []
    compressor = zlib.compressobj(wbits=-bits)
    for message in messages:
        if not takeover:
            compressor = zlib.compressobj(wbits=-bits)
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(sc.DEFLATE_TAIL)
        out.append(data[:-4])
    return out


@pytest.mark.parametrize("takeover", [True, False])
def test_compressed_messages_are_inflated_with_or_without_context_takeover(takeover: bool) -> None:
    messages = [b'{"type":"update","seq":%d,"text":"the quick brown fox"}' % i for i in range(3)]
    reader = sc.MessageReader(sc.Deflate(reset_per_message=not takeover, window_bits=15))
    got = []
    for data in deflate_messages(messages, takeover=takeover):
        got += reader.feed(server_frame(sc.OP_TEXT, data, rsv1=True))
        assert (reader.inflater is None) == (not takeover)
    assert got == [(sc.OP_TEXT, m) for m in messages]


def test_fragments_are_joined_and_control_frames_pass_between_them() -> None:
    (data,) = deflate_messages([b"a fragmented compressed message"], takeover=True)
    stream = (
        server_frame(sc.OP_TEXT, data[:5], fin=False, rsv1=True)
        + server_frame(sc.OP_PING, b"keepalive")
        + server_frame(sc.OP_CONT, data[5:])
    )
    reader = sc.MessageReader(sc.Deflate(False, 15))
    assert reader.feed(stream) == [(sc.OP_PING, b"keepalive"), (sc.OP_TEXT, b"a fragmented compressed message")]


def test_protocol_errors() -> None:
    with pytest.raises(sc.ProtocolError):
        sc.MessageReader().feed(server_frame(sc.OP_TEXT, b"x", rsv1=True))  # deflate not negotiated
    with pytest.raises(sc.ProtocolError):
        sc.MessageReader().feed(server_frame(sc.OP_CONT, b"x"))
    with pytest.raises(sc.ProtocolError):
        sc.MessageReader().feed(server_frame(sc.OP_TEXT, b"x", fin=False) + server_frame(sc.OP_TEXT, b"y"))


def test_seq_of_a_feed_result() -> None:
    assert sc.seq_of(b'{"id": "1", "type": "next", "payload": {"data": {"feed": {"seq": 17, "text": "x"}}}}') == 17
    assert sc.seq_of(b'{"id":"1","type":"next","payload":{"data":{"feed":{"seq":3}}}}') == 3
    assert sc.seq_of(b'{"type": "complete", "id": "1"}') is None


def test_quantiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert sc.quantiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert sc.quantiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0, "max": 3.0}
    assert sc.quantiles([]) == {}


def test_idle_cpu_is_compared_among_the_servers_that_ping() -> None:
    plan = dataclasses.asdict(scale.QUICK)
    (column,) = [c for c in scale.socket_columns(plan, "idle") if c.title.startswith("idle CPU")]
    results = {
        "channelserver": {"window": {"ms_per_s": 20.0, "pings_per_conn": 1.0}},
        "uvicorn": {"window": {"ms_per_s": 35.0, "pings_per_conn": 1.0}},
        "hypercorn": {"window": {"ms_per_s": 2.4, "pings_per_conn": 0.0}},  # never pings
    }
    assert scale.ratio_cells([column], results) == ["0.57x (uvicorn)"]


def test_sockets_are_counted_per_process() -> None:
    before = sum(scale.sockets([os.getpid()]))
    with socket.socket(), socket.socket():
        assert sum(scale.sockets([os.getpid()])) == before + 2
