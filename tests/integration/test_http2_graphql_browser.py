"""One browser page, 20 server-sent-event streams and 20 Strawberry GraphQL subscriptions
over HTTP at once, in a real headless Chromium over TLS HTTP/2 (Debian's chromium driven by
Playwright, trusting the test server's key by its pin, as test_http2_browser.py does;
missing under ``CI=true`` is a failure, elsewhere a skip).

The server is channelserver serving the demo project (demo_project.asgi: Strawberry's
Channels HTTP consumer at ``/graphql`` with multipart subscriptions, Django, the in-memory
channel layer, a freshly migrated SQLite database) with h2_apps' event streams mounted
beside it, and a page of its own (tests/integration/h2_graphql_apps.py). The page opens,
at once, 20 EventSource streams to ``/sse`` (held by the app until released) and 20
subscriptions ``messages(room)``, each a ``fetch`` POST to ``/graphql`` with ``Accept:
multipart/mixed;subscriptionSpec=1.0, application/json`` whose body it reads as it comes.

- over ``--http auto`` (ALPN h2): the page waits, through the demo's ``awaitStats``, until
  the 20 subscriptions are live in the server and its 20 event streams are open, then posts
  a message (``postMessage``) and releases the event streams. Every subscription gets the
  message and every event stream its 5 events and ``done``; the app saw all 45 requests of
  the page (the page, 40 streams, the wait, the mutation, the release) as HTTP/2 from one
  client port, with all 40 streams in the app when the mutation came; the access log says
  the same. The page then aborts its subscriptions (each a reset stream on the shared
  connection) and every ``messages`` resolver runs its ``finally``.
- over ``--http 1``: Chromium opens at most 6 connections to a host, so 6 streams reach the
  app, each on its own connection, and nothing else of the page does: not the other 34
  streams, not the wait that would trigger the message, not even a one-line query the page
  asks for meanwhile.
"""

from __future__ import annotations

import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.wire import token
from tests.demo.conftest import fresh_db, migrate, require_executable
from tests.integration.test_http2_browser import (
    H1_CONNECTIONS,
    TIMEOUT_MS,
    Page,
    assert_quiet,
    chromium_trusting,
)
from tests.integration.test_tls_proxy import PKI, make_pki
from tests.servers import ServerProcess, tls_channelserver

pytestmark = pytest.mark.timeout(90)

APP = "tests.integration.h2_graphql_apps:app"
STREAMS, EVENTS = 20, 5
#: A room the demo's migrations create.
ROOM = "lobby"
#: How long a request the page makes while its 6 connections are held must stay unsent to
#: count as queued: it would take milliseconds if a connection or stream were free.
QUEUED_FOR_MS = 1000

AWAIT_STATS = (
    "query ($until: StatsCondition!, $timeoutMs: Int!) "
    "{ awaitStats(until: $until, timeoutMs: $timeoutMs) { byField { field active finished } } }"
)


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's database, migrated once; each server gets a copy of its own."""
    db = tmp_path_factory.mktemp("demo-template") / "demo.sqlite3"
    migrate(db)
    return db


@pytest.fixture
def demo_db(template_db: Path, tmp_path: Path) -> Path:
    return fresh_db(template_db, tmp_path)


def demo_tls_server(pki: PKI, db: Path, *flags: str) -> ServerProcess:
    """The demo with the event-stream routes, over TLS, one worker (the counts live in it)."""
    env = {"DEMO_DB": str(db), "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    return tls_channelserver(APP, pki.server_cert, pki.server_key, "--workers", "1", *flags, env=env)


class Control:
    """The test's own connection to the server (not the browser's)."""

    def __init__(self, server: ServerProcess, pki: PKI) -> None:
        self.base = f"https://127.0.0.1:{server.port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=30)

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        # Before the server stops: a TLS connection left idle in the pool would hold the
        # server's shutdown for its whole graceful_timeout.
        self.client.close()

    def recorded(self, group: str) -> dict[str, Any]:
        answer = self.client.get(f"{self.base}/requests", params={"group": group})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def wait_for(self, group: str, what: str, check: Any) -> dict[str, Any]:
        """Poll what the app recorded of the group until ``check(recorded)``."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            recorded = self.recorded(group)
            if check(recorded):
                return recorded
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {TIMEOUT_MS} ms; the app recorded {recorded}")
            time.sleep(0.05)

    def await_stats(self, until: dict[str, Any], timeout_ms: int) -> dict[str, dict[str, int]]:
        """The demo's awaitStats (it waits inside the server): counts by subscription field."""
        answer = self.client.post(
            f"{self.base}/graphql",
            json={"query": AWAIT_STATS, "variables": {"until": until, "timeoutMs": timeout_ms}},
        )
        answer.raise_for_status()
        result = answer.json()
        assert "errors" not in result, result
        by_field = result["data"]["awaitStats"]["byField"]
        return {row["field"]: {"active": row["active"], "finished": row["finished"]} for row in by_field}


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, as tests/demo uses it."""
    return require_executable("chromium", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser(chromium: str, pki: PKI) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, chromium_trusting(playwright, chromium, pki) as instance:
        yield instance


def page_url(server: ServerProcess, group: str, text: str) -> str:
    query = f"group={group}&streams={STREAMS}&events={EVENTS}&room={ROOM}&text={text}&drive=1"
    return f"https://127.0.0.1:{server.port}/page?{query}"


ACCESS_LINE = re.compile(r'127\.0\.0\.1:(\d+) - "(\w+) (/\w*)\?(\S*) HTTP/([\d.]+)" (\d+)')


def access_lines(server: ServerProcess, group: str, count: int) -> list[tuple[str, str, str, str, str]]:
    """(port, method, path, version, status) of the access-log lines of the page's requests
    (those of the group, but the test's own ``/requests``), once ``count`` of them are in."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        found = [
            (port, method, path, version, status)
            for port, method, path, query, version, status in ACCESS_LINE.findall(server.drain_output(0.05))
            if f"group={group}" in query.split("&") and path != "/requests"
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found


# -- tests ------------------------------------------------------------------------------------


def test_twenty_subscriptions_and_twenty_event_streams_share_one_http2_connection(
    browser: Any, pki: PKI, demo_db: Path
) -> None:
    with demo_tls_server(pki, demo_db) as server:
        with Control(server, pki) as control:
            group, text = token(), f"hello-{token()}"
            page = Page(browser, page_url(server, group, text))
            try:
                state = page.outcome()
                assert state == "all-done", page.evaluate("window.errors")
                results = page.evaluate("window.results")
                assert results["subscriptions"] == {str(i): [text] for i in range(STREAMS)}
                assert results["sse"] == {str(i): [f"{i}:{k}" for k in range(EVENTS)] for i in range(STREAMS)}
                assert page.evaluate("window.errors") == []
            finally:
                page.close()

            recorded = control.recorded(group)
            requests = recorded["requests"]
            kinds = Counter(r["kind"] for r in requests)
            assert requests[0]["kind"] == "page"
            assert kinds == {"page": 1, "sse": STREAMS, "subscription": STREAMS, "graphql": 2, "release": 1}
            assert {(r["http_version"], r["scheme"]) for r in requests} == {("2", "https")}
            assert len({r["port"] for r in requests}) == 1, requests  # one connection carried them all
            assert sorted(int(r["i"]) for r in requests if r["kind"] == "subscription") == list(range(STREAMS))
            # the wait, then the mutation: when the message was posted, all 40 streams were in the app
            _wait, mutation = (r for r in requests if r["kind"] == "graphql")
            assert mutation["streams_open"] == 2 * STREAMS and recorded["peak"] == 2 * STREAMS

            # The page aborted its subscriptions once they had the message: each a reset
            # stream; each resolver learns it at its next write (the multipart heartbeat).
            until = {"field": "messages", "activeAtMost": 0, "finishedAtLeast": STREAMS}
            counts = control.await_stats(until, timeout_ms=20_000)
            assert counts["messages"] == {"active": 0, "finished": STREAMS}
            control.wait_for(group, "the subscriptions' apps to end", lambda r: r["open"] == 0)

        # channelserver's own record: one access-log line per request, all HTTP/2, one port
        lines = access_lines(server, group, len(requests))
        assert Counter((method, path) for _, method, path, _, _ in lines) == {
            ("GET", "/page"): 1,
            ("GET", "/sse"): STREAMS,
            ("POST", "/graphql"): STREAMS + 2,
            ("GET", "/release"): 1,
        }
        assert {(version, status) for _, _, _, version, status in lines} == {("2", "200")}
        assert len({port for port, *_ in lines}) == 1, lines
        assert_quiet(server)


def test_over_http1_the_page_is_held_to_six_streams(browser: Any, pki: PKI, demo_db: Path) -> None:
    with demo_tls_server(pki, demo_db, "--http", "1") as server, Control(server, pki) as control:
        group, text = token(), f"hello-{token()}"
        page = Page(browser, page_url(server, group, text))
        try:
            recorded = control.wait_for(
                group, f"{H1_CONNECTIONS} streams in the app", lambda r: r["open"] == H1_CONNECTIONS
            )
            # None of the six can end on its own (a subscription waits for a message, an event
            # stream for its release), so the page can send nothing more: a query it asks for
            # now stays queued in the browser.
            probe = page.evaluate(
                """(ms) => Promise.race([
                    fetch(`/graphql?group=${new URLSearchParams(location.search).get("group")}&probe=1`, {
                      method: "POST",
                      headers: {"content-type": "application/json"},
                      body: JSON.stringify({query: "{ stats { pid } }"}),
                    }).then((response) => `answered ${response.status}`),
                    new Promise((resolve) => setTimeout(() => resolve("queued"), ms)),
                ])""",
                QUEUED_FOR_MS,
            )
            assert probe == "queued"
            assert page.evaluate("document.getElementById('status').dataset.state") == "running"
            assert page.evaluate("window.errors") == []
            recorded = control.recorded(group)
        finally:
            page.close()
        requests = recorded["requests"]
        streams = [r for r in requests if r["kind"] in ("sse", "subscription")]
        assert requests[0]["kind"] == "page"
        assert len(requests) == 1 + H1_CONNECTIONS, requests  # the page and six streams: nothing else came
        assert len(streams) == H1_CONNECTIONS and recorded["peak"] == H1_CONNECTIONS
        assert {(r["http_version"], r["scheme"]) for r in requests} == {("1.1", "https")}
        assert len({r["port"] for r in streams}) == H1_CONNECTIONS, streams  # a connection each
        assert_quiet(server)
