"""asyncio and anyio APIs in an app's first step, and one Task from its first line to its return.

``apps/first_step.py`` enters ``asyncio.timeout()``, ``asyncio.wait_for``, an anyio task
group or an anyio cancel scope before anything else, in an HTTP app and in a WebSocket app
(before ``websocket.accept`` and after it). Each of these needs the running Task, so each
fails where a server runs an app's first step outside one. The app reports
``id(asyncio.current_task())`` at its first line, after each step and just before it
returns; every id must be the same, and not ``None``.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.apps.wire import RawConnection, token
from tests.servers import ServerProcess

from .conftest import serving

pytestmark = pytest.mark.ecosystem

APP = "tests.ecosystem.apps.first_step:app"
KINDS = [
    pytest.param(
        "timeout",
        marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in Python 3.11"),
    ),
    "wait_for",
    "task_group",
    "fail_after",
    "plain",
]


def returned(server: ServerProcess, key: str) -> dict[str, Any]:
    """The ids the app logged just before it returned (waits for the line)."""
    prefix = b"first-step returning "
    start = prefix + b'{"token": "' + key.encode() + b'"'
    server.wait_for(re.compile(re.escape(start) + rb"[^\n]*\n"), 10)  # the whole line
    output = server.output
    begin = output.index(start) + len(prefix)
    return json.loads(output[begin : output.index(b"\n", begin)])  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
def test_http_app_first_step(kind: str, loop: str) -> None:
    key = token()
    with serving(APP, "--loop", loop) as server:
        with RawConnection(server.port) as conn:
            conn.request("GET", f"/{kind}?token={key}")
            response = conn.read_response()
        assert response.status == 200, response
        body = response.json()
        ids = body["ids"]
        end = returned(server, key)
    print(f"http {kind} on {loop}: task ids {ids}, at return {end['last']}")
    assert (body["loop"], body["received"]) == (loop, "http.request")
    assert ids[0] is not None
    assert ids == [ids[0]] * 3
    assert body["same"] == [True] * 3
    assert end == {"token": key, "first": ids[0], "last": ids[0], "same": True}


@pytest.mark.parametrize("kind", KINDS)
def test_websocket_app_before_and_after_accept(kind: str, loop: str) -> None:
    key = token()
    with serving(APP, "--loop", loop) as server:
        with connect(f"{server.ws_url}/{kind}?token={key}", open_timeout=10) as ws:
            ws.send("hello")
            reply = json.loads(ws.recv(timeout=10))
        end = returned(server, key)
    ids = reply["ids"]
    print(f"websocket {kind} on {loop}: task ids {ids}, at return {end['last']}")
    assert reply["loop"] == loop
    assert reply["received"] == ["websocket.connect", "websocket.receive", "hello"]
    assert ids[0] is not None
    assert ids == [ids[0]] * 4  # first line, before accept, after accept, after the message
    assert reply["same"] == [True] * 4
    assert end == {"token": key, "first": ids[0], "last": ids[0], "same": True}
