"""WebSocket against a real ``python -m channelserver`` (issue 2, items 3-4).

One server for the module, serving ``tests/apps/core_app.py``; tests that read the log
line by line or change the keepalive timers start their own. The ``websockets`` client
where a well-behaved client is the point; raw frames where the bytes are (pings and
unsolicited pongs, frames before the accept, a socket dropped without a close frame, a
peer that never answers pings).
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from tests.apps.wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    LogWindow,
    RawConnection,
    close_payload,
    frame,
    records,
    tell,
    token,
)
from tests.servers import ServerProcess, channelserver


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app") as proc:
        yield proc


def where(conn: RawConnection, target: str) -> str:
    """How an ASGIProtocolError names a WebSocket connection: the issue's example form,
    ``(GET /ws/ from 127.0.0.1:53122)``."""
    return f"GET {target} from 127.0.0.1:{conn.sock.getsockname()[1]}"


def named(conn: RawConnection, target: str) -> str:
    """The part of any message that names the connection: target and client."""
    return f"{target} from 127.0.0.1:{conn.sock.getsockname()[1]}"


def facts(server: ServerProcess, key: str, name: str) -> list[Any]:
    """What the app instance of token ``key`` recorded as ``name``, once it returned."""
    assert records(server.url, f"{key}:returned") == [True]
    return records(server.url, f"{key}:{name}", 0, 0)


# -- the handshake and messages -------------------------------------------------------------


def test_subprotocol_headers_on_accept_and_permessage_deflate(server: ServerProcess) -> None:
    key = token()
    url = f"{server.ws_url}/ws/echo?token={key}"
    with connect(url, subprotocols=["chat.v1", "chat.v2"], additional_headers={"X-Custom": "Given"}) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["x-accepted"] == "yes"
        assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        big = "compress me " * 1000
        ws.send(big)
        assert ws.recv(timeout=5) == big
    connected = facts(server, key, "messages")[0]
    assert connected == {"type": "websocket.connect"}


def test_scope_of_a_websocket(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(
            f"/ws/echo?token={key}&a=%20", [("Sec-WebSocket-Protocol", "chat.v2, other"), ("X-Mixed-Case", "Yes")]
        )
        client_port = conn.sock.getsockname()[1]
        conn.send_frame(CLOSE, close_payload(1000))
        assert conn.read_frame().opcode == CLOSE
    [scope] = facts(server, key, "scope")
    assert isinstance(scope, dict)
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/ws/echo"
    assert scope["raw_path"] == "/ws/echo"
    assert scope["query_string"] == f"token={key}&a=%20"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat.v2", "other"]
    assert ["x-mixed-case", "Yes"] in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"lifespan": "started"}
    assert "websocket.http.response" in scope["extensions"]


def test_text_and_bytes_both_ways_including_empty(server: ServerProcess) -> None:
    key = token()
    sent: list[str | bytes] = ["hi", "", b"\x00\x01\xff", b"", "end"]
    with connect(f"{server.ws_url}/ws/echo?token={key}") as ws:
        for message in sent:
            ws.send(message)
        echoed = [ws.recv(timeout=5) for _ in sent]
    assert echoed == sent
    received = facts(server, key, "messages")[1:-1]
    assert received == [
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.receive", "text": ""},
        {"type": "websocket.receive", "bytes": "\x00\x01\xff"},  # recorded as latin-1 text
        {"type": "websocket.receive", "bytes": ""},
        {"type": "websocket.receive", "text": "end"},
    ]


def test_close_code_and_reason_from_the_app(server: ServerProcess) -> None:
    key = token()
    with connect(f"{server.ws_url}/ws/echo?token={key}") as ws:
        ws.send("close:4001:see you")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "see you")
    assert facts(server, key, "messages")[-1] == {"type": "websocket.disconnect", "code": 4001, "reason": "see you"}


def test_close_code_and_reason_from_the_client(server: ServerProcess) -> None:
    key = token()
    with connect(f"{server.ws_url}/ws/echo?token={key}") as ws:
        ws.close(4002, "client reason")
    assert facts(server, key, "messages")[-1] == {
        "type": "websocket.disconnect",
        "code": 4002,
        "reason": "client reason",
    }


def test_denial_response(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_handshake(f"/ws/deny?token={key}")
        response = conn.read_response()
    assert response.status == 401
    assert response.header(b"x-denied") == b"because"
    assert response.body == b"denied, go away"
    assert facts(server, key, "denied") == [True]


@pytest.mark.parametrize(
    ("version", "keys", "reason"),
    [
        ("1.0", ["dGhlIHNhbXBsZSBub25jZQ=="], "a WebSocket handshake must be HTTP/1.1, not HTTP/1.0"),
        (
            "1.1",
            ["dGhlIHNhbXBsZSBub25jZQ==", "AAECAwQFBgcICQoLDA0ODw=="],
            "Sec-WebSocket-Key is given 2 times; a handshake has one",
        ),
    ],
    ids=["http-1.0", "two-keys"],
)
def test_a_handshake_over_http_1_0_or_with_two_keys_is_refused_and_the_app_never_runs(
    server: ServerProcess, version: str, keys: list[str], reason: str
) -> None:
    """RFC 6455 4.2.1 and 11.3.1, which wsproto does not check: refused with 400 and a
    warning, as a malformed key is; the app never starts and the server goes on serving."""
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        lines = [
            f"GET /ws/echo?token={key} HTTP/{version}",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            *(f"Sec-WebSocket-Key: {k}" for k in keys),
            "Sec-WebSocket-Version: 13",
        ]
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = conn.read_response()
        assert (response.status, response.body) == (400, reason.encode() + b"\n")
        assert conn.closed_by_peer()
        client_port = conn.sock.getsockname()[1]
    assert records(server.url, f"{key}:scope", 0, 0) == [], "the app never started"
    with connect(f"{server.ws_url}/ws/echo?token={token()}") as ws:
        ws.send("still serving")
        assert ws.recv(timeout=5) == "still serving"
    warnings = [line for line in log.text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert f"Rejected WebSocket handshake from 127.0.0.1:{client_port}: {reason} (answered 400)" in warnings[0]
    assert log.errors() == []


# -- the behaviours users were burnt by -----------------------------------------------------


def test_close_before_accept_is_403_and_logs_no_error(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.ws_handshake(f"/ws/reject?token={key}")
        response = conn.read_response()
    assert response.status == 403
    assert facts(server, key, "closed") == [True]
    assert log.errors() == []


def test_connect_once_and_receive_waits_for_the_accept_from_a_background_task(server: ServerProcess) -> None:
    """The app accepts from a task it spawned and is back in ``receive()`` at once; a
    frame is already there (sent with the handshake). ``receive()`` must neither return
    ``websocket.connect`` again nor the frame before the accept."""
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/bg?token={key}", then=frame(TEXT, b"early"))
        assert conn.read_frame().payload == b"echo:early"
        conn.send_frame(TEXT, b"later")
        assert conn.read_frame().payload == b"echo:later"
        conn.send_frame(CLOSE, close_payload(1000))
        assert conn.read_frame().close_code == 1000
    assert facts(server, key, "received") == [
        {"type": "websocket.connect", "accepted": False, "text": None},
        {"type": "websocket.receive", "accepted": True, "text": "early"},
        {"type": "websocket.receive", "accepted": True, "text": "later"},
        {"type": "websocket.disconnect", "accepted": True, "text": None},
    ]


def test_accept_send_close_from_another_task_while_receive_is_parked(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/close-from-task?token={key}")
        opened = time.monotonic()
        message, close = conn.read_frame(), conn.read_frame()
        took = time.monotonic() - opened
        assert (message.opcode, message.payload) == (TEXT, b"from task")
        assert (close.opcode, close.close_code, close.close_reason) == (CLOSE, 4001, "bye from task")
        assert took < 1.0, f"the close frame took {took:.2f}s"
        conn.send_frame(CLOSE, close.payload)
        assert conn.closed_by_peer()
    assert facts(server, key, "received") == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye from task"}]


def test_a_peer_that_leaves_without_a_close_frame_is_1006_at_once(server: ServerProcess) -> None:
    key = token()
    conn = RawConnection(server.port)
    conn.ws_open(f"/ws/echo?token={key}")
    conn.close()
    left = time.monotonic()
    assert facts(server, key, "messages")[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert time.monotonic() - left < 1.0


def test_sends_after_the_client_left_are_dropped_until_disconnect_was_handed_over(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/send-after-leave?token={key}")
        assert conn.read_frame().payload == b"ready"
        target = named(conn, f"/ws/send-after-leave?token={key}")
    log = LogWindow(server, server.url)
    tell(server.url, f"{key}:gone")
    [outcome] = facts(server, key, "outcome")
    after = outcome.pop("send_after_disconnect")
    assert outcome == {
        "sends_before_disconnect": "ok",
        "received": {"type": "websocket.disconnect", "code": 1006, "reason": ""},
    }
    assert (after["type"], after["oserror"]) == ("ClientDisconnected", True)
    assert after["text"].startswith("WebSocket client disconnected (") and target in after["text"]
    assert log.errors() == []


def test_misuse_before_accept_is_500_named_and_logged_once(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.ws_handshake(f"/ws/misuse?token={key}")
        response = conn.read_response()
        target = where(conn, f"/ws/misuse?token={key}")
    assert response.status == 500
    message = (
        "websocket.send not allowed in state CONNECTING; expected websocket.accept, "
        f"websocket.close or websocket.http.response.start ({target})"
    )
    assert facts(server, key, "raised") == [{"type": "ASGIProtocolError", "oserror": False, "text": message}]
    text = log.text()
    assert len(re.findall(re.escape(f"ERROR ASGI protocol error: {message}"), text)) == 1, text
    assert "Traceback" not in text


def test_misuse_after_accept_is_close_1011_named_and_logged_once(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/misuse-after-accept?token={key}")
        close = conn.read_frame()
        target = where(conn, f"/ws/misuse-after-accept?token={key}")
    assert (close.opcode, close.close_code) == (CLOSE, 1011)
    message = f"websocket.accept not allowed in state CONNECTED; expected websocket.send or websocket.close ({target})"
    assert facts(server, key, "raised") == [{"type": "ASGIProtocolError", "oserror": False, "text": message}]
    text = log.text()
    assert len(re.findall(re.escape(f"ERROR ASGI protocol error: {message}"), text)) == 1, text
    assert "Traceback" not in text


def test_app_returning_without_answering_the_handshake_gets_500_and_a_log_line(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.ws_handshake(f"/ws/no-accept?token={key}")
        response = conn.read_response()
        target = named(conn, f"/ws/no-accept?token={key}")
    assert response.status == 500
    lines = [line for line in log.text().splitlines() if "ASGI app returned without accepting or closing" in line]
    assert len(lines) == 1 and " ERROR " in lines[0] and target in lines[0], lines


# -- frames ASGI has no message for -----------------------------------------------------


def test_pings_and_unsolicited_pongs_never_reach_the_app_and_log_nothing() -> None:
    with channelserver("core_app:app") as server:
        key = token()
        log = LogWindow(server, server.url)
        with RawConnection(server.port) as conn:
            conn.ws_open(f"/ws/echo?token={key}")
            conn.send_frame(PING)
            conn.send_frame(PONG)
            conn.send_frame(TEXT, b"between")
            conn.send_frame(PING, b"with payload")
            conn.send_frame(PONG, b"unsolicited")
            conn.send_frame(TEXT, b"after")
            got = [conn.read_frame() for _ in range(4)]
            conn.send_frame(CLOSE, close_payload(1000))
            assert conn.read_frame().close_code == 1000
        # Pongs answer pings at once, echoes come from the app: only each kind's order counts.
        assert [f.payload for f in got if f.opcode == PONG] == [b"", b"with payload"]
        assert [f.payload for f in got if f.opcode == TEXT] == [b"between", b"after"]
        assert facts(server, key, "messages") == [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "between"},
            {"type": "websocket.receive", "text": "after"},
            {"type": "websocket.disconnect", "code": 1000, "reason": ""},
        ]
        lines = [line for line in log.text().splitlines() if "/_records/" not in line]
        assert len(lines) == 1 and '"WebSocket accepted /ws/echo"' in lines[0], lines


def test_a_ping_before_the_accept_is_answered_after_it_and_never_reaches_the_app(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        # /ws/bg accepts 50 ms later, from a task; the ping and the text wait for it.
        conn.ws_open(f"/ws/bg?token={key}", then=frame(PING, b"early") + frame(PONG, b"") + frame(TEXT, b"x"))
        got = [conn.read_frame() for _ in range(2)]
        conn.send_frame(CLOSE, close_payload(1000))
        assert conn.read_frame().opcode == CLOSE
    assert sorted((f.opcode, f.payload) for f in got) == [(TEXT, b"echo:x"), (PONG, b"early")]
    assert [m["type"] for m in facts(server, key, "received")] == [
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    ]


def test_permessage_deflate_compresses_what_the_app_sends(server: ServerProcess) -> None:
    key = token()
    text = "compress me " * 500
    with RawConnection(server.port) as conn:
        response = conn.ws_open(f"/ws/echo?token={key}", [("Sec-WebSocket-Extensions", "permessage-deflate")])
        assert (response.header(b"sec-websocket-extensions") or b"").startswith(b"permessage-deflate")
        conn.send_frame(TEXT, text.encode())  # uncompressed frames stay allowed (RFC 7692)
        echoed = conn.read_frame()
        conn.send_frame(CLOSE, close_payload(1000))
    assert echoed.rsv1, "the echo is not compressed"
    assert len(echoed.payload) < len(text) // 10
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(echoed.payload + b"\x00\x00\xff\xff").decode() == text


# -- keepalive pings ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pinging_server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.2") as proc:
        yield proc


def test_a_peer_that_never_answers_pings_is_disconnected(pinging_server: ServerProcess) -> None:
    server = pinging_server
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/echo?token={key}")
        opened = time.monotonic()
        ping = conn.read_frame()
        assert ping.opcode == PING
        close = conn.read_frame()
        assert (close.opcode, close.close_code) == (CLOSE, 1011)
        took = time.monotonic() - opened
        assert conn.closed_by_peer(2.0)
    assert 0.3 <= took < 2.0, took
    disconnect = facts(server, key, "messages")[-1]
    assert disconnect["type"] == "websocket.disconnect"
    assert disconnect["code"] == 1011


def test_a_peer_that_answers_pings_stays(pinging_server: ServerProcess) -> None:
    server = pinging_server
    key = token()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/echo?token={key}")
        for _ in range(2):
            ping = conn.read_frame()
            assert ping.opcode == PING
            conn.send_frame(PONG, ping.payload)
        conn.send_frame(TEXT, b"still here")
        got = conn.read_frame()
        while got.opcode == PING:
            conn.send_frame(PONG, got.payload)
            got = conn.read_frame()
        assert (got.opcode, got.payload) == (TEXT, b"still here")
        conn.send_frame(CLOSE, close_payload(1000))
    assert facts(server, key, "messages")[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
