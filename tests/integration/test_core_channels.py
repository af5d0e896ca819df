"""Django Channels consumers on a real ``python -m channelserver`` (issue 2, items 3-4).

The project is ``tests/apps/chanapp``: a ``ProtocolTypeRouter`` with a Django view, a
streaming ``AsyncHttpConsumer``, a consumer answering from background tasks, and one that
keeps sending while its client leaves. The consumers count their ``websocket_connect``,
``websocket_disconnect`` and ``group_discard`` calls through ``tests/apps/recorder.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.apps.wire import ERROR_LINE, TEXT, LogWindow, RawConnection, records, token
from tests.servers import ServerProcess, channelserver


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("chanapp.asgi:application") as proc:
        yield proc


def counts(server: ServerProcess, key: str) -> dict[str, Any]:
    """Once the consumer of ``key`` returned: how often each handler ran."""
    assert records(server.url, f"{key}:returned") == [True]
    return {
        "websocket_connect": len(records(server.url, f"{key}:websocket_connect", 0, 0)),
        "websocket_disconnect": records(server.url, f"{key}:websocket_disconnect", 0, 0),
        "group_discard": len(records(server.url, f"group_discard:g{key}", 0, 0)),
    }


def test_lifespan_auto_goes_on_quietly_when_the_router_rejects_lifespan(server: ServerProcess) -> None:
    startup = server.text[: server.text.index("Listening on")]
    assert [line for line in startup.splitlines() if ERROR_LINE.search(line) or "WARNING" in line] == []
    with RawConnection(server.port) as conn:
        conn.request("GET", "/django/")
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"django ok")


def test_lifespan_on_makes_the_rejection_fatal_in_one_line() -> None:
    proc = ServerProcess(
        [sys.executable, "-m", "channelserver", "--port", "0", "--lifespan", "on", "chanapp.asgi:application"],
        wait_for_port=False,
    )
    with proc:
        assert proc.wait(30) != 0
    assert "Listening on" not in proc.text
    assert "lifespan" in proc.text.lower()


def test_background_task_consumer_connects_once_and_disconnects_once(server: ServerProcess) -> None:
    key = token()
    with connect(f"{server.ws_url}/ws/bg/?token={key}") as ws:
        ws.send("a")
        ws.send("b")
        replies = sorted([ws.recv(timeout=5), ws.recv(timeout=5)])
    assert replies == ["echo:a", "echo:b"]
    assert counts(server, key) == {
        "websocket_connect": 1,
        "websocket_disconnect": [{"type": "websocket.disconnect", "code": 1000, "reason": ""}],
        "group_discard": 1,
    }


def test_consumer_sending_while_its_client_leaves_still_reaches_its_disconnect_handler(
    server: ServerProcess,
) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/flood/?token={key}")
        conn.send_frame(TEXT, b"go")
        assert conn.read_frame().payload == b"flood 0"
    # The socket is closed without a close frame; 39 more sends follow, 10 ms apart.
    assert counts(server, key) == {
        "websocket_connect": 1,
        "websocket_disconnect": [{"type": "websocket.disconnect", "code": 1006, "reason": ""}],
        "group_discard": 1,
    }
    assert records(server.url, f"{key}:flood", 0, 0) == ["done"]
    assert log.errors() == []


def test_streaming_http_consumer_stops_when_its_client_leaves(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/stream/?token={key}")
        assert conn.read_line() == b"HTTP/1.1 200 OK"
    assert records(server.url, f"{key}:returned") == [True]
    assert records(server.url, f"{key}:stopped", 0, 0) == [{"type": "ClientDisconnected", "oserror": True}]
    assert records(server.url, f"{key}:disconnect", 0, 0) == [True]
    text = log.text()
    stopped = [line for line in text.splitlines() if "stopped: client disconnected" in line and key in line]
    assert len(stopped) == 1 and " INFO " in stopped[0], text
    assert "Traceback" not in text
