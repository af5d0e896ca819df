"""Django Channels scenarios, the same on channelserver and Daphne.

The project is ``tests/apps/chanapp``. The consumers count how often their handlers ran;
the scenarios are the ones where a server's choices decide whether a consumer's cleanup
(``websocket_disconnect``, ``group_discard``) runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.sync.client import connect

from tests.apps.wire import ERROR_LINE, TEXT, LogWindow, RawConnection, records, token

pytestmark = pytest.mark.parity


def counts(server: Any, key: str) -> dict[str, Any]:
    url = server.channels.url
    assert records(url, f"{key}:returned") == [True]
    disconnects = records(url, f"{key}:websocket_disconnect", 0, 0)
    return {
        "connects": len(records(url, f"{key}:websocket_connect", 0, 0)),
        "disconnect_codes": [d["code"] for d in disconnects],
        "group_discards": len(records(url, f"group_discard:g{key}", 0, 0)),
    }


def test_lifespan_auto_is_quiet(server: Any, parity: Any) -> None:
    text = server.channels.text
    startup = text[: text.index("Listening on")]
    noisy = [line for line in startup.splitlines() if ERROR_LINE.search(line) or "WARNING" in line]
    parity.check("channels.lifespan_quiet", noisy, [])


def test_background_task_consumer(server: Any, parity: Any) -> None:
    key = token()
    with connect(f"{server.channels.ws_url}/ws/bg/?token={key}") as ws:
        ws.send("a")
        ws.send("b")
        replies = sorted([ws.recv(timeout=5), ws.recv(timeout=5)])
    parity.check(
        "channels.background_consumer",
        {"replies": replies, **counts(server, key)},
        {"replies": ["echo:a", "echo:b"], "connects": 1, "disconnect_codes": [1000], "group_discards": 1},
    )


def test_consumer_mid_send_when_the_client_leaves(server: Any, parity: Any) -> None:
    key = token()
    log = LogWindow(server.channels, server.channels.url)
    with RawConnection(server.channels.port) as conn:
        conn.ws_open(f"/ws/flood/?token={key}")
        conn.send_frame(TEXT, b"go")
        assert conn.read_frame().payload == b"flood 0"
    observed = {
        **counts(server, key),
        "flood": records(server.channels.url, f"{key}:flood", 0, 0),
        "errors": log.errors(),
    }
    parity.check(
        "channels.flood_client_leaves",
        observed,
        {"connects": 1, "disconnect_codes": [1006], "group_discards": 1, "flood": ["done"], "errors": []},
    )


def test_streaming_consumer_when_the_client_leaves(server: Any, parity: Any) -> None:
    key = token()
    url = server.channels.url
    with RawConnection(server.channels.port) as conn:
        conn.request("GET", f"/stream/?token={key}")
        assert conn.read_line() == b"HTTP/1.1 200 OK"
    assert records(url, f"{key}:returned", 1, 5) == [True]
    observed = {
        "stopped": records(url, f"{key}:stopped", 0, 0),
        "disconnect_ran": records(url, f"{key}:disconnect", 0, 0),
    }
    parity.check(
        "channels.streaming_consumer",
        observed,
        {"stopped": [{"type": "ClientDisconnected", "oserror": True}], "disconnect_ran": [True]},
    )
