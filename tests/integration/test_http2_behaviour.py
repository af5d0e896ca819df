"""The HTTP promises of docs/behaviour.md, run again over HTTP/2 (cleartext, by prior
knowledge) against the same ``core_app`` as tests/integration/test_core_http.py.

Each stream is one ASGI cycle driven by the same table as an HTTP/1.1 request, so the
promises are the same; what HTTP/2 changes is how a client "leaves" (it resets its stream,
or closes the connection) and what stays open after a response (the connection, always).
Keep-alive, pipelining and ``Expect: 100-continue`` are HTTP/1.1's own and have no HTTP/2
counterpart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import h2.events
import httpx
import pytest

from tests.apps.wire import LogWindow, records, token
from tests.integration.test_http2 import RawH2
from tests.servers import ServerProcess, channelserver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app") as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, http1=False, http2=True, timeout=20) as h2client:
        yield h2client


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawH2]:
    assert server.port is not None
    conn = RawH2(server.port)
    yield conn
    conn.close()


def where(raw: RawH2, target: str, method: str = "GET") -> str:
    return f"{method} {target} from 127.0.0.1:{raw.sock.getsockname()[1]}"


def response(raw: RawH2, sid: int) -> tuple[int, dict[str, str], bytes]:
    raw.read_until(
        lambda _: raw.ended(sid) or any(isinstance(e, h2.events.StreamReset) and e.stream_id == sid for e in raw.events)
    )
    heads = [e for e in raw.events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid]
    headers = {name: value for name, value in heads[0].headers} if heads else {}
    return int(headers.get(":status", 0)), headers, raw.body(sid)


def test_scope_is_complete_over_http2(client: httpx.Client) -> None:
    answer = client.get("/scope/caf%C3%A9/x?a=1&b=2", headers={"x-one": "1", "X-Two": "2"})
    assert answer.http_version == "HTTP/2"
    scope: dict[str, Any] = answer.json()
    assert scope["type"] == "http" and scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("2", "GET", "http")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/scope/café/x",
        "/scope/caf%C3%A9/x",
        "a=1&b=2",
    )
    names = [name for name, _ in scope["headers"]]
    assert names[0] == "host" and "x-one" in names and "x-two" in names  # host from :authority, names lowercased
    assert not any(name.startswith(":") for name in names)
    assert scope["client"][0] == "127.0.0.1" and scope["server"][0] == "127.0.0.1"
    assert scope["state"] == {"lifespan": "started"}


def test_a_request_body_reaches_the_app_as_it_arrives(raw: RawH2, server: ServerProcess) -> None:
    key = token()
    sid = raw.request(f"/body?token={key}", method="POST", end=False)
    raw.conn.send_data(sid, b"first")
    raw.flush()
    assert records(server.url, f"{key}:part") == [["http.request", 5, True]]  # before the rest was sent
    raw.conn.send_data(sid, b"second", end_stream=True)
    raw.flush()
    status, _, body = response(raw, sid)
    assert status == 200
    assert b'"body": "firstsecond"' in body


def test_an_empty_body_is_one_message(client: httpx.Client) -> None:
    answer = client.post("/body", content=b"")
    assert answer.json()["messages"] == [["http.request", 0, False]]


def test_a_head_response_has_its_headers_and_no_body(client: httpx.Client) -> None:
    got = client.get("/hello")
    head = client.head("/hello")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"] == "11"


def test_a_reset_stream_reaches_a_pending_receive_at_once(raw: RawH2, server: ServerProcess) -> None:
    key = token()
    sid = raw.request(f"/wait-disconnect?token={key}")
    assert records(server.url, f"{key}:started") == [True]
    left = time.monotonic()
    raw.conn.reset_stream(sid)
    raw.flush()
    assert records(server.url, f"{key}:received") == [{"type": "http.disconnect"}]
    assert time.monotonic() - left < 1.0


def test_a_closed_connection_reaches_every_pending_receive(server: ServerProcess) -> None:
    assert server.port is not None
    keys = [token() for _ in range(3)]
    raw = RawH2(server.port)
    for key in keys:
        raw.request(f"/wait-disconnect?token={key}")
    for key in keys:
        assert records(server.url, f"{key}:started") == [True]
    raw.close()
    for key in keys:
        assert records(server.url, f"{key}:received") == [{"type": "http.disconnect"}]


def test_send_raises_client_disconnected_once_the_stream_is_reset(raw: RawH2, server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    target = f"/stream?token={key}"
    sid = raw.request(target)
    raw.read_until(lambda _: bool(raw.body(sid)))  # it streams
    text = where(raw, target)
    raw.conn.reset_stream(sid)
    raw.flush()
    stopped = records(server.url, f"{key}:stopped")
    assert stopped == [{"type": "ClientDisconnected", "oserror": True, "text": f"client disconnected ({text})"}]
    lines = [line for line in log.text().splitlines() if key in line and "stopped: client disconnected" in line]
    assert len(lines) == 1 and " INFO " in lines[0]


def test_misuse_raises_is_logged_once_and_answered_500(raw: RawH2, server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    target = f"/misuse?token={key}"
    status, _, _ = response(raw, raw.request(target))
    assert status == 500
    message = (
        "http.response.body not allowed in state REQUEST; expected http.response.start or "
        f"http.response.early_hint ({where(raw, target)})"
    )
    assert records(server.url, f"{key}:raised") == [{"type": "ASGIProtocolError", "oserror": False, "text": message}]
    text = log.text()
    assert len(re.findall(re.escape(f"ERROR ASGI protocol error: {message}"), text)) == 1, text
    assert "Traceback" not in text


def test_an_app_returning_without_a_response_gets_500_and_a_log_line(raw: RawH2, server: ServerProcess) -> None:
    log = LogWindow(server, server.url)
    status, _, _ = response(raw, raw.request("/no-response"))
    assert status == 500
    text = log.text()
    assert f"ERROR ASGI app returned without starting a response; sent 500 ({where(raw, '/no-response')})" in text


def test_a_second_start_is_refused_and_the_first_response_stands(raw: RawH2, server: ServerProcess) -> None:
    key = token()
    status, headers, body = response(raw, raw.request(f"/start-twice?token={key}"))
    assert (status, headers.get("x-first"), body) == (201, "yes", b"first body")
    assert "x-second" not in headers
    # the connection serves on
    assert response(raw, raw.request("/hello"))[2] == b"hello world"


def test_a_second_start_then_a_return_resets_only_that_stream(raw: RawH2, server: ServerProcess) -> None:
    """HTTP/1.1 closes the connection so the client sees the body cut short; on HTTP/2
    the cut-short stream is reset (INTERNAL_ERROR) and the connection serves on."""
    key = token()
    sid = raw.request(f"/start-twice?token={key}&then=return")
    raw.read_until(lambda ev: any(isinstance(e, h2.events.StreamReset) and e.stream_id == sid for e in ev))
    heads = [e for e in raw.events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid]
    assert dict(heads[0].headers)[":status"] == "201"
    (reset,) = [e for e in raw.events if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]
    assert reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert response(raw, raw.request("/hello"))[2] == b"hello world"
