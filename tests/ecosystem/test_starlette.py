"""Starlette with ``BaseHTTPMiddleware`` (an anyio task group per request): an HTTP route
over one keep-alive connection and a WebSocket route (``apps/starlette_app.py``)."""

from __future__ import annotations

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
