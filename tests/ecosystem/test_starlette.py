"""Starlette with ``BaseHTTPMiddleware`` (an anyio task group per request): an HTTP route
over one keep-alive connection and a WebSocket route (``apps/starlette_app.py``)."""

from __future__ import annotations

import re

import pytest
from websockets.sync.client import connect

from tests.apps.wire import RawConnection

from .conftest import serving

pytestmark = pytest.mark.ecosystem

APP = "tests.ecosystem.apps.starlette_app:app"


def test_http_route_through_base_http_middleware(loop: str) -> None:
    sent = [("GET", ""), ("POST", "x" * 100_000), ("POST", "last")]
    with serving(APP, "--loop", loop) as server, RawConnection(server.port) as conn:
        answers = []
        for method, body in sent:
            conn.request(method, "/echo", body=body.encode())
            answers.append(conn.read_response())
    for answer, (method, body) in zip(answers, sent, strict=True):
        assert answer.status == 200, answer
        seen = answer.json()
        print(f"{method}: middleware task {seen['middleware_task']}, route task {seen['route_task']}")
        assert (seen["method"], seen["body"]) == (method, body)
        assert seen["middleware_task"] is not None and seen["route_task"] is not None
        # the middleware's own Task, the same before and after call_next
        assert (
            answer.header(b"x-middleware")
            == answer.header(b"x-middleware-after")
            == str(seen["middleware_task"]).encode()
        )


def test_websocket_route(loop: str) -> None:
    with serving(APP, "--loop", loop) as server, connect(f"{server.ws_url}/ws", open_timeout=10) as ws:
        for text in ("one", "two"):
            ws.send(text)
            assert ws.recv(timeout=10) == f"echo:{text}"


def test_a_disconnect_wakes_every_task_waiting_in_receive(loop: str) -> None:
    """A watcher task waits for ``http.disconnect`` while the response's generator probes
    with ``Request.is_disconnected()``, a second ``receive()`` cancelled at once. The client
    leaves after the first part: the watcher is woken with the disconnect at once, whatever
    the probe's receive() did meanwhile."""
    with serving("tests.ecosystem.apps.starlette_app:watch_app", "--loop", loop) as server:
        with RawConnection(server.port) as conn:
            conn.request("GET", "/watch")
            assert conn.read_line().startswith(b"HTTP/1.1 200")
            while b"first" not in conn.read_line():
                pass
            server.wait_for(re.compile(rb"probed while the watcher waits"), timeout=5)
        server.wait_for(re.compile(rb"watcher saw http\.disconnect"), timeout=5)
