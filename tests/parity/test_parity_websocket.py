"""WebSocket scenarios, the same on channelserver and Daphne (``server`` is parametrised).

The app is ``tests/apps/core_app.py``. Clients: ``websockets`` where a well-behaved
client is the point, raw frames where the bytes are. Expected differences are in
``differences.py``; everything else must match.
"""

from __future__ import annotations

import time
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
    records,
    tell,
    token,
)

pytestmark = pytest.mark.parity


def facts(server: Any, key: str, name: str) -> list[Any]:
    """What the app instance of token ``key`` recorded as ``name``, once it returned."""
    assert records(server.core.url, f"{key}:returned") == [True]
    return records(server.core.url, f"{key}:{name}", 0, 0)


def handshake_status(server: Any, target: str) -> int | None:
    """The status the handshake is answered with; None if the connection ends without one."""
    with RawConnection(server.core.port, timeout=1.5) as conn:
        conn.ws_handshake(target)
        try:
            return conn.read_response(head=True).status
        except (EOFError, ConnectionResetError, TimeoutError):
            return None


def test_handshake(server: Any, parity: Any) -> None:
    key = token()
    with connect(f"{server.core.ws_url}/ws/echo?token={key}", subprotocols=["chat.v1", "chat.v2"]) as ws:
        subprotocol = ws.subprotocol
        header = ws.response.headers.get("x-accepted")
        extensions = ws.response.headers.get("sec-websocket-extensions") or ""
    parity.check("ws.subprotocol", subprotocol, "chat.v2")
    parity.check("ws.accept_headers", header, "yes")
    parity.check("ws.permessage_deflate", extensions.startswith("permessage-deflate"), True)


def test_messages_both_ways(server: Any, parity: Any) -> None:
    key = token()
    sent: list[str | bytes] = ["hi", "", b"\x00\x01\xff", b"", "end"]
    with connect(f"{server.core.ws_url}/ws/echo?token={key}", compression=None) as ws:
        for message in sent:
            ws.send(message)
        echoed = []
        while not echoed or echoed[-1] != "end":
            echoed.append(ws.recv(timeout=5))
    received = [m for m in facts(server, key, "messages") if m["type"] == "websocket.receive"]
    parity.check(
        "ws.client_to_app",
        received,
        [
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.receive", "text": ""},
            {"type": "websocket.receive", "bytes": "\x00\x01\xff"},
            {"type": "websocket.receive", "bytes": ""},
            {"type": "websocket.receive", "text": "end"},
        ],
    )
    parity.check("ws.app_to_client", echoed, sent)


def test_close_from_the_app(server: Any, parity: Any) -> None:
    key = token()
    with connect(f"{server.core.ws_url}/ws/echo?token={key}") as ws:
        ws.send("close:4001:see you")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    rcvd = closed.value.rcvd
    parity.check("ws.close_from_app", None if rcvd is None else [rcvd.code, rcvd.reason], [4001, "see you"])


def test_close_from_the_client(server: Any, parity: Any) -> None:
    key = token()
    with connect(f"{server.core.ws_url}/ws/echo?token={key}") as ws:
        ws.close(4002, "client reason")
    disconnect = facts(server, key, "messages")[-1]
    parity.check(
        "ws.close_from_client", disconnect, {"type": "websocket.disconnect", "code": 4002, "reason": "client reason"}
    )


def test_peer_drops_without_close_frame(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.ws_open(f"/ws/echo?token={key}")
    disconnect = facts(server, key, "messages")[-1]
    parity.check("ws.peer_drop", [disconnect["type"], disconnect["code"]], ["websocket.disconnect", 1006])


def test_close_before_accept(server: Any, parity: Any) -> None:
    key = token()
    log = LogWindow(server.core, server.core.url)
    status = handshake_status(server, f"/ws/reject?token={key}")
    assert facts(server, key, "closed") == [True]
    parity.check("ws.reject_before_accept", {"status": status, "errors": log.errors()}, {"status": 403, "errors": []})


def test_denial_response(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port, timeout=1.5) as conn:
        conn.ws_handshake(f"/ws/deny?token={key}")
        try:
            response = conn.read_response()
            observed = {
                "status": response.status,
                "x-denied": response.header(b"x-denied"),
                "body": response.body,
            }
        except (EOFError, ConnectionResetError, TimeoutError):
            observed = {"status": None, "x-denied": None, "body": None}
    parity.check("ws.denial", observed, {"status": 401, "x-denied": b"because", "body": b"denied, go away"})


def test_connect_once_with_accept_from_a_background_task(server: Any, parity: Any) -> None:
    key = token()
    with connect(f"{server.core.ws_url}/ws/bg?token={key}") as ws:
        ws.send("a")
        reply = ws.recv(timeout=5)
    parity.check(
        "ws.connect_once_background_accept",
        {"reply": reply, "received": facts(server, key, "received")},
        {
            "reply": "echo:a",
            "received": [
                {"type": "websocket.connect", "accepted": False, "text": None},
                {"type": "websocket.receive", "accepted": True, "text": "a"},
                {"type": "websocket.disconnect", "accepted": True, "text": None},
            ],
        },
    )


def test_pings_and_unsolicited_pongs(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.ws_open(f"/ws/echo?token={key}")
        for opcode, payload in [(PING, b""), (PONG, b""), (PING, b"abc"), (PONG, b"xyz"), (TEXT, b"after")]:
            conn.send_frame(opcode, payload)
        got = [conn.read_frame() for _ in range(3)]
        conn.send_frame(CLOSE, close_payload(1000))
        conn.read_frame()
    observed = {
        "pongs": [f.payload for f in got if f.opcode == PONG],
        "texts": [f.payload for f in got if f.opcode == TEXT],
        "app": [[m["type"], m.get("text")] for m in facts(server, key, "messages")],
    }
    expected = {
        "pongs": [b"", b"abc"],
        "texts": [b"after"],
        "app": [["websocket.connect", None], ["websocket.receive", "after"], ["websocket.disconnect", None]],
    }
    parity.check("ws.ping_pong", observed, expected)


def test_close_from_another_task_while_receive_is_parked(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.ws_open(f"/ws/close-from-task?token={key}")
        opened = time.monotonic()
        message, close = conn.read_frame(), conn.read_frame()
        assert time.monotonic() - opened < 1.0
        conn.send_frame(CLOSE, close.payload)
    observed = {
        "frames": [[message.opcode, message.payload.decode()], [close.opcode, close.close_code, close.close_reason]],
        "disconnect_code": facts(server, key, "received")[0]["code"],
    }
    parity.check(
        "ws.close_from_task",
        observed,
        {"frames": [[TEXT, "from task"], [CLOSE, 4001, "bye from task"]], "disconnect_code": 4001},
    )


def test_send_after_the_client_left(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.ws_open(f"/ws/send-after-leave?token={key}")
        assert conn.read_frame().payload == b"ready"
    tell(server.core.url, f"{key}:gone")
    [outcome] = facts(server, key, "outcome")
    after = outcome["send_after_disconnect"]
    observed = {
        "sends_before_disconnect": outcome["sends_before_disconnect"],
        "received_code": outcome["received"]["code"],
        "send_after_disconnect": after if after == "ok" else f"{after['type']} (OSError: {after['oserror']})",
    }
    parity.check(
        "ws.send_after_leave",
        observed,
        {
            "sends_before_disconnect": "ok",
            "received_code": 1006,
            "send_after_disconnect": "ClientDisconnected (OSError: True)",
        },
    )


def test_misuse_before_accept(server: Any, parity: Any) -> None:
    parity.check("ws.misuse_before_accept", handshake_status(server, "/ws/misuse"), 500)


def test_misuse_after_accept(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port, timeout=3) as conn:
        conn.ws_open("/ws/misuse-after-accept")
        close = conn.read_frame()
    parity.check("ws.misuse_after_accept", [close.opcode, close.close_code], [CLOSE, 1011])


def test_app_returning_without_answering_the_handshake(server: Any, parity: Any) -> None:
    parity.check("ws.no_accept", handshake_status(server, "/ws/no-accept"), 500)
