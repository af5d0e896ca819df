"""HTTP/1.1 against a real ``python -m channelserver`` (issue 2, items 3-4).

One server for the module, serving ``tests/apps/core_app.py`` with ``--root-path /mnt``.
Raw sockets where the bytes matter (pipelining, 100-continue, HEAD, a client that leaves);
the app records what it received and the test asks for it (``tests/apps/recorder.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.apps.wire import LogWindow, RawConnection, records, token
from tests.servers import ServerProcess, channelserver


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("core_app:app", "--root-path", "/mnt") as proc:
        yield proc


def where(conn: RawConnection, target: str, method: str = "GET") -> str:
    """How the server names a request in its messages: ``GET /x from 127.0.0.1:5555``."""
    return f"{method} {target} from 127.0.0.1:{conn.sock.getsockname()[1]}"


# -- the scope ------------------------------------------------------------------------------


def test_scope_is_complete(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.request("GET", "/scope/caf%C3%A9/a%20b/c%2Fd?x=1&y=%20", [("X-Mixed-Case", "Yes")])
        scope = conn.read_response().json()
        client_port = conn.sock.getsockname()[1]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    # path: percent-decoded (UTF-8), with root_path in front (ASGI: path includes root_path);
    # raw_path: the bytes that came, undecoded.
    assert scope["path"] == "/mnt/scope/café/a b/c/d"
    assert scope["raw_path"] == "/scope/caf%C3%A9/a%20b/c%2Fd"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == "/mnt"
    assert ["x-mixed-case", "Yes"] in scope["headers"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"lifespan": "started"}


def test_scope_http_version_1_0(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.send(b"GET /scope HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert response.json()["http_version"] == "1.0"
        assert conn.closed_by_peer(), "an HTTP/1.0 request without keep-alive ends the connection"


def test_post_method_and_headers_repeated(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.request("PUT", "/scope", [("X-Twice", "a"), ("X-Twice", "b")], body=b"data")
        scope = conn.read_response().json()
    assert scope["method"] == "PUT"
    assert [v for k, v in scope["headers"] if k == "x-twice"] == ["a", "b"]


# -- request bodies -------------------------------------------------------------------------


def test_content_length_body_arrives_in_parts(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.request("POST", f"/body?token={key}", [("Content-Length", "11")])
        conn.send(b"hello")
        assert records(server.url, f"{key}:part") == [["http.request", 5, True]]
        conn.send(b" world")
        answer = conn.read_response().json()
    assert answer == {"body": "hello world", "messages": [["http.request", 5, True], ["http.request", 6, False]]}


def test_chunked_body_arrives_in_parts(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.request("POST", f"/body?token={key}", [("Transfer-Encoding", "chunked")])
        conn.send(b"5\r\nhello\r\n")
        assert records(server.url, f"{key}:part") == [["http.request", 5, True]]
        conn.send(b"6\r\n world\r\n0\r\n\r\n")
        answer = conn.read_response().json()
    assert answer["body"] == "hello world"
    assert answer["messages"][0] == ["http.request", 5, True]
    assert answer["messages"][-1][2] is False
    assert sum(size for _, size, _ in answer["messages"]) == 11


def test_empty_body_is_one_message(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.request("GET", "/body")
        assert conn.read_response().json() == {"body": "", "messages": [["http.request", 0, False]]}


# -- connections ----------------------------------------------------------------------------


def test_keep_alive_serves_requests_on_one_connection(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        ports = []
        for _ in range(3):
            conn.request("GET", "/scope")
            response = conn.read_response()
            assert response.status == 200
            assert response.header(b"connection") != b"close"
            ports.append(response.json()["client"][1])
    assert len(set(ports)) == 1


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        # The first is the slowest: a server answering concurrently would answer it last.
        conn.send(
            b"GET /slow/a?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /slow/b HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /slow/c HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first, second = conn.read_response(), conn.read_response()
        head, last = conn.read_response(head=True), conn.read_response()
    assert [first.body, second.body, last.body] == [b"/slow/a", b"/slow/b", b"/slow/c"]
    assert head.status == 200 and head.body == b""


def test_expect_100_continue(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.request("POST", "/body", [("Content-Length", "5"), ("Expect", "100-continue")])
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"hello")
        final = conn.read_response()
    assert final.status == 200
    assert final.json()["body"] == "hello"


def test_head_response_has_no_body(server: ServerProcess) -> None:
    with RawConnection(server.port) as conn:
        conn.request("HEAD", "/hello")
        head = conn.read_response(head=True)
        assert head.status == 200
        assert head.header(b"content-length") == b"11"
        # Had the body been written, this GET would read it as its status line.
        conn.request("GET", "/hello")
        response = conn.read_response()
    assert (response.status, response.body) == (200, b"hello world")


# -- a client that leaves -------------------------------------------------------------------


def test_http_disconnect_reaches_a_pending_receive_at_once(server: ServerProcess) -> None:
    key = token()
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/wait-disconnect?token={key}")
        assert records(server.url, f"{key}:started") == [True]
        left = time.monotonic()
    assert records(server.url, f"{key}:received") == [{"type": "http.disconnect"}]
    assert time.monotonic() - left < 1.0


def test_send_raises_client_disconnected_once_the_client_left(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/stream?token={key}")
        assert conn.read_line() == b"HTTP/1.1 200 OK"
        target = where(conn, f"/stream?token={key}")
    stopped = records(server.url, f"{key}:stopped")
    assert stopped == [{"type": "ClientDisconnected", "oserror": True, "text": f"client disconnected ({target})"}]
    text = log.text()
    lines = [line for line in text.splitlines() if key in line and "stopped: client disconnected" in line]
    assert len(lines) == 1, text
    assert " INFO " in lines[0]
    assert "Traceback" not in text


# -- apps that get it wrong -----------------------------------------------------------------


def test_app_returning_without_a_response_gets_500_and_a_log_line(server: ServerProcess) -> None:
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", "/no-response")
        response = conn.read_response()
        target = where(conn, "/no-response")
    assert response.status == 500
    text = log.text()
    assert f"ERROR ASGI app returned without starting a response; sent 500 ({target})" in text
    assert "Traceback" not in text


def test_asgi_misuse_raises_names_it_and_is_logged_once(server: ServerProcess) -> None:
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/misuse?token={key}")
        response = conn.read_response()
        target = where(conn, f"/misuse?token={key}")
    assert response.status == 500
    message = f"http.response.body not allowed in state REQUEST; expected http.response.start or http.response.early_hint ({target})"
    assert records(server.url, f"{key}:raised") == [{"type": "ASGIProtocolError", "oserror": False, "text": message}]
    text = log.text()
    assert len(re.findall(re.escape(f"ERROR ASGI protocol error: {message}"), text)) == 1, text
    assert text.count("ASGI protocol error") == 1, text
    assert "Traceback" not in text


def test_a_second_start_is_refused_and_the_first_response_stands(server: ServerProcess) -> None:
    """The app catches the error its second http.response.start raised and sends its body:
    the client gets the first status, headers and body, on a connection that stays open."""
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/start-twice?token={key}")
        response = conn.read_response()
        target = where(conn, f"/start-twice?token={key}")
        assert (response.status, response.header(b"x-first"), response.body) == (201, b"yes", b"first body")
        assert response.header(b"x-second") is None
        conn.request("GET", "/hello")
        assert conn.read_response().body == b"hello world", "the connection is still in step"
    message = f"http.response.start not allowed in state RESPONSE; expected http.response.body or http.response.pathsend ({target})"
    assert records(server.url, f"{key}:raised") == [{"type": "ASGIProtocolError", "oserror": False, "text": message}]
    text = log.text()
    assert len(re.findall(re.escape(f"ERROR ASGI protocol error: {message}"), text)) == 1, text
    assert text.count("ASGI protocol error") == 1, text
    assert "Traceback" not in text


def test_a_second_start_then_a_return_gets_the_first_head_and_a_close(server: ServerProcess) -> None:
    """The app returns after the refused start, without a body: the head it committed is
    written (not a 500), then the connection closes, its chunked body cut short."""
    key = token()
    log = LogWindow(server, server.url)
    with RawConnection(server.port) as conn:
        conn.request("GET", f"/start-twice?token={key}&then=return")
        data = conn.read_until_close()
        target = where(conn, f"/start-twice?token={key}&then=return")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 201 Created"
    assert b"x-first: yes" in lines and b"Transfer-Encoding: chunked" in lines
    assert b"x-second" not in data
    assert rest == b"", "no body, not even its last chunk: the client sees it cut short"
    assert len(records(server.url, f"{key}:raised")) == 1
    text = log.text()
    assert f"ERROR ASGI app returned without completing the response; closed the connection ({target})" in text
    assert "Traceback" not in text


def test_records_endpoint_serves_json(server: ServerProcess) -> None:
    """The test apparatus itself: facts recorded by the app come back as JSON."""
    key = token()
    assert records(server.url, key, 0, 0) == []
    with RawConnection(server.port) as conn:
        conn.request("POST", f"/_records/{key}?count=0&timeout=0")
        assert json.loads(conn.read_response().body) == [True]
