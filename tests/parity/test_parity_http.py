"""HTTP scenarios, the same on channelserver and Daphne (``server`` is parametrised).

The app is ``tests/apps/core_app.py`` mounted with ``--root-path /mnt`` on both servers.
Expected differences are in ``differences.py``; everything else must match.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.apps.wire import RawConnection, records, token

pytestmark = pytest.mark.parity


def scope_of(server: Any) -> tuple[dict[str, Any], int]:
    with RawConnection(server.core.port) as conn:
        conn.request("GET", "/scope/caf%C3%A9/a%20b?x=1", [("X-Mixed-Case", "Yes")])
        return conn.read_response().json(), conn.sock.getsockname()[1]


def test_scope(server: Any, parity: Any) -> None:
    scope, client_port = scope_of(server)
    observed = {
        "type": scope["type"],
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "raw_path": scope["raw_path"],
        "query_string": scope["query_string"],
        "root_path": scope["root_path"],
        "x-mixed-case": [v for k, v in scope["headers"] if k == "x-mixed-case"],
        "headers_lowercase": all(k == k.lower() for k, _ in scope["headers"]),
        "client": scope["client"],
        "server": scope["server"],
    }
    parity.check(
        "http.scope",
        observed,
        {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "raw_path": "/scope/caf%C3%A9/a%20b",
            "query_string": "x=1",
            "root_path": "/mnt",
            "x-mixed-case": ["Yes"],
            "headers_lowercase": True,
            "client": ["127.0.0.1", client_port],
            "server": ["127.0.0.1", server.core.port],
        },
    )
    parity.check("http.scope.path", scope["path"], "/mnt/scope/café/a b")
    parity.check("http.scope.asgi", scope["asgi"], {"version": "3.0", "spec_version": "2.4"})
    parity.check("http.lifespan_state", scope.get("state"), {"lifespan": "started"})


def test_http_1_0(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        conn.send(b"GET /scope HTTP/1.0\r\n\r\n")
        observed = conn.read_response().json()["http_version"]
    parity.check("http.version_1_0", observed, "1.0")


def test_body_is_streamed_to_the_app(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.request("POST", f"/body?token={key}", [("Content-Length", "11")])
        conn.send(b"hello")
        first = records(server.core.url, f"{key}:part", 1, 1.0)
        conn.send(b" world")
        answer = conn.read_response().json()
    parity.check(
        "http.body_streamed",
        {"first_part_before_the_rest": first, **answer},
        {
            "first_part_before_the_rest": [["http.request", 5, True]],
            "messages": [["http.request", 5, True], ["http.request", 6, False]],
            "body": "hello world",
        },
    )


def test_chunked_body(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        conn.request("POST", "/body", [("Transfer-Encoding", "chunked")])
        conn.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        answer = conn.read_response().json()
    observed = {"body": answer["body"], "last_more_body": answer["messages"][-1][2]}
    parity.check("http.body_chunked", observed, {"body": "hello world", "last_more_body": False})


def test_keep_alive(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        answers = []
        for _ in range(3):
            conn.request("GET", "/scope")
            response = conn.read_response()
            answers.append((response.status, response.json()["client"][1]))
    observed = {"statuses": [s for s, _ in answers], "connections": len({p for _, p in answers})}
    parity.check("http.keep_alive", observed, {"statuses": [200, 200, 200], "connections": 1})


def test_pipelining(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        conn.send(
            b"GET /slow/a?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /slow/b HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /slow/c HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        observed = [
            conn.read_response().body,
            conn.read_response().body,
            conn.read_response(head=True).status,
            conn.read_response().body,
        ]
    parity.check("http.pipelining", observed, [b"/slow/a", b"/slow/b", 200, b"/slow/c"])


def test_expect_100_continue(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        conn.request("POST", "/body", [("Content-Length", "5"), ("Expect", "100-continue")])
        interim = conn.read_response().status
        conn.send(b"hello")
        final = conn.read_response()
    parity.check("http.expect_100", [interim, final.status, final.json()["body"]], [100, 200, "hello"])


def test_head(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port) as conn:
        conn.request("HEAD", "/hello")
        head = conn.read_response(head=True)
        conn.request("GET", "/hello")
        after = conn.read_response()
    observed = {"status": head.status, "content-length": head.header(b"content-length"), "next": after.body}
    parity.check("http.head", observed, {"status": 200, "content-length": b"11", "next": b"hello world"})


def test_http_disconnect(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.request("GET", f"/wait-disconnect?token={key}")
        assert records(server.core.url, f"{key}:started") == [True]
    parity.check("http.disconnect", records(server.core.url, f"{key}:received", 1, 3), [{"type": "http.disconnect"}])


def test_send_after_the_client_left(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.request("GET", f"/stream?token={key}")
        assert conn.read_line() == b"HTTP/1.1 200 OK"
    [stopped] = records(server.core.url, f"{key}:stopped", 1, 5)
    observed = {"type": stopped["type"], "oserror": stopped["oserror"]}
    parity.check("http.send_after_client_left", observed, {"type": "ClientDisconnected", "oserror": True})


def test_app_returning_without_a_response(server: Any, parity: Any) -> None:
    with RawConnection(server.core.port, timeout=1.5) as conn:
        conn.request("GET", "/no-response")
        try:
            observed: int | None = conn.read_response().status
        except (TimeoutError, EOFError):
            observed = None
    parity.check("http.no_response", observed, 500)


def test_misuse(server: Any, parity: Any) -> None:
    key = token()
    with RawConnection(server.core.port) as conn:
        conn.request("GET", f"/misuse?token={key}")
        status = conn.read_response().status
    [raised] = records(server.core.url, f"{key}:raised")
    parity.check(
        "http.misuse", {"status": status, "raised": raised["type"]}, {"status": 500, "raised": "ASGIProtocolError"}
    )
