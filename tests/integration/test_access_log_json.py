"""``--access-log-format json`` against a real server: every access line is one JSON
object, for an HTTP request, an app error (500), a WebSocket accepted and closed from
each side, and a refused handshake (403)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.servers import ServerProcess, channelserver


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app", "--access-log-format", "json") as proc:
        yield proc


def lines_for(server: ServerProcess, path: str, **having: Any) -> list[dict[str, Any]]:
    """The JSON access lines of ``path`` (with the fields ``having``), once one is written.
    Every line of the output that is not the server's own text log must parse as JSON."""
    needle = json.dumps({"path": path, **having}, separators=(",", ":"))[1:-1].split(",")
    pattern = rb".*".join(re.escape(part.encode()) for part in needle)
    server.wait_for(re.compile(pattern), 5)
    found = []
    for line in server.text.splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            if fields["path"] == path and all(fields[k] == v for k, v in having.items()):
                found.append(fields)
    return found


def check_common(line: dict[str, Any], server: ServerProcess) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line
    assert line["pid"] == server.proc.pid
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["client"]), line
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0


def test_an_http_request_is_one_json_line_without_its_query(server: ServerProcess) -> None:
    with urllib.request.urlopen(f"{server.url}/hello?token=secret-value", timeout=5) as response:
        assert response.read() == b"hello world"
    [line] = lines_for(server, "/hello")
    check_common(line, server)
    assert {k: line[k] for k in ("type", "method", "has_query", "http_version", "status")} == {
        "type": "http",
        "method": "GET",
        "has_query": True,
        "http_version": "1.1",
        "status": 200,
    }
    assert "secret-value" not in server.text


def test_an_app_error_is_logged_with_the_500_the_server_answered(server: ServerProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(f"{server.url}/misuse", timeout=5)
    answered.value.close()
    assert answered.value.code == 500
    [line] = lines_for(server, "/misuse")
    check_common(line, server)
    assert (line["status"], line["has_query"]) == (500, False)


def test_a_websocket_closed_by_the_client(server: ServerProcess) -> None:
    with connect(f"{server.ws_url}/ws/echo?token=a", open_timeout=5) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.close(4001, "client done")
    [line] = lines_for(server, "/ws/echo", close_code=4001)
    check_common(line, server)
    assert {k: line[k] for k in ("type", "has_query", "accepted", "status", "close_code", "closed_by")} == {
        "type": "websocket",
        "has_query": True,
        "accepted": True,
        "status": 101,
        "close_code": 4001,
        "closed_by": "client",
    }


def test_a_websocket_closed_by_the_app(server: ServerProcess) -> None:
    with connect(f"{server.ws_url}/ws/echo", open_timeout=5) as ws:
        ws.send("close:4002:bye")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
    [line] = lines_for(server, "/ws/echo", close_code=4002)
    check_common(line, server)
    assert (line["accepted"], line["has_query"], line["closed_by"]) == (True, False, "server")


def test_a_refused_handshake_is_one_json_line(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws/reject", open_timeout=5)
    assert refused.value.response.status_code == 403
    [line] = lines_for(server, "/ws/reject")
    check_common(line, server)
    assert (line["type"], line["accepted"], line["status"], line["closed_by"]) == ("websocket", False, 403, None)
