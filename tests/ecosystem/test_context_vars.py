"""Context variables set by one request are never seen by the next one on the same
keep-alive connection (pipelined or not), nor by another WebSocket connection's messages
(``apps/context_vars.py``)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.apps.wire import RawConnection

from .conftest import serving

pytestmark = pytest.mark.ecosystem

APP = "tests.ecosystem.apps.context_vars:app"


def recv(ws: ClientConnection) -> dict[str, object]:
    return json.loads(ws.recv(timeout=10))  # type: ignore[no-any-return]


def test_http_requests_on_one_keep_alive_connection(loop: str) -> None:
    with serving(APP, "--loop", loop) as server, RawConnection(server.port) as conn:
        seen = []
        for token in ("first", "second", "third"):
            conn.request("GET", f"/?token={token}")
            response = conn.read_response()
            assert response.status == 200, response
            assert response.header(b"connection") != b"close"
            seen.append(response.json())
    assert seen == [
        {"at_start": None, "after_await": "first"},
        {"at_start": None, "after_await": "second"},
        {"at_start": None, "after_await": "third"},
    ]


def test_pipelined_http_requests(loop: str) -> None:
    """Sent in one write: each request after the first is started from inside the Task of
    the one before (its last send() completes the response and reads the next head)."""
    with serving(APP, "--loop", loop) as server, RawConnection(server.port) as conn:
        conn.send(b"".join(f"GET /?token={t} HTTP/1.1\r\nHost: test\r\n\r\n".encode() for t in ("p1", "p2", "p3")))
        seen = [conn.read_response().json() for _ in range(3)]
    assert seen == [
        {"at_start": None, "after_await": "p1"},
        {"at_start": None, "after_await": "p2"},
        {"at_start": None, "after_await": "p3"},
    ]


def test_websocket_messages_of_two_connections(loop: str) -> None:
    with serving(APP, "--loop", loop) as server:
        with connect(f"{server.ws_url}/?token=a", open_timeout=10) as a:
            assert recv(a) == {"connection": None, "last_message": None}
            a.send("a1")
            assert recv(a) == {"connection": "a", "last_message": None}
            with connect(f"{server.ws_url}/?token=b", open_timeout=10) as b:
                assert recv(b) == {"connection": None, "last_message": None}
                b.send("b1")
                assert recv(b) == {"connection": "b", "last_message": None}
                a.send("a2")
                assert recv(a) == {"connection": "a", "last_message": "a1"}
                b.send("b2")
                assert recv(b) == {"connection": "b", "last_message": "b1"}
        with connect(f"{server.ws_url}/?token=c", open_timeout=10) as c:
            assert recv(c) == {"connection": None, "last_message": None}
