"""HTTP/2 in a real headless Chromium over TLS (Debian's chromium driven by Playwright, as
tests/demo/test_browser.py launches it; missing under ``CI=true`` is a failure, elsewhere
a skip).

The page (tests/integration/h2_apps.py, ``/page``) opens 20 EventSource streams at once to
its own origin. Each stream holds its events until all 20 are in the app together, then
sends 5 events 20 ms apart and ``done``.

- over ``--http auto`` (ALPN h2): every stream delivers all its events, in order; the app
  saw the page and all 20 streams as ``http_version`` "2" from one client port: one
  connection carried them all, 20 at once;
- over ``--http 1``: Chromium opens at most 6 connections to a host, so only 6 streams
  reach the app and the 20 never come together; once the test releases the group, the
  other 14 follow, at most 6 at a time, over HTTP/1.1 on more than one connection.

The browser trusts the test server's key only, without ``ignore_https_errors``: it is
launched with ``--ignore-certificate-errors-spki-list`` naming the SHA-256 of the server
certificate's public key (no NSS database is made: Playwright runs Chromium with a
throwaway ``--user-data-dir``). The same browser without that flag refuses the
certificate (``ERR_CERT_AUTHORITY_INVALID``), which a test here checks, so the pin is
what lets the page load.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.wire import ERROR_LINE, token
from tests.demo.conftest import require_executable
from tests.integration.test_tls_proxy import PKI, make_pki
from tests.servers import ServerProcess, tls_channelserver

pytestmark = pytest.mark.timeout(90)

APP = "tests.integration.h2_apps:app"
#: Generous: every wait ends on an event; this only bounds a failure.
TIMEOUT_MS = 30_000
#: As tests/demo/test_browser.py launches Chromium.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STREAMS, EVENTS = 20, 5
#: Chromium's limit of connections to one host over HTTP/1.1.
H1_CONNECTIONS = 6


def spki_sha256(cert: Path) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's pin form)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("neither the 'cryptography' package nor the 'openssl' command is available")
        pem = subprocess.run(
            [openssl, "x509", "-in", str(cert), "-noout", "-pubkey"], capture_output=True, check=True
        ).stdout
        der = subprocess.run(
            [openssl, "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True, check=True
        ).stdout
    else:
        public_key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
        der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_server(pki: PKI, *flags: str) -> ServerProcess:
    return tls_channelserver(APP, pki.server_cert, pki.server_key, "--workers", "1", *flags)


class App:
    """The app's side of a group, asked over a connection of the test's own."""

    def __init__(self, server: ServerProcess, pki: PKI) -> None:
        self.base = f"https://127.0.0.1:{server.port}"
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10)

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def stats(self, group: str) -> dict[str, Any]:
        answer = self.client.get(f"{self.base}/stats", params={"group": group})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def release(self, group: str) -> None:
        self.client.get(f"{self.base}/release", params={"group": group}).raise_for_status()

    def wait_for(self, group: str, what: str, check: Any, timeout: float = TIMEOUT_MS / 1000) -> dict[str, Any]:
        """Poll the group's stats until ``check(stats)``; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            counted = self.stats(group)
            if check(counted):
                return counted
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout}s; the app counted {counted}")
            time.sleep(0.05)


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, as tests/demo uses it."""
    return require_executable("chromium", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def playwright(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@contextlib.contextmanager
def chromium_trusting(playwright: Any, chromium: str, pki: PKI) -> Iterator[Any]:
    """Chromium trusting the test server's key (and nothing else it would not trust)."""
    pin = f"--ignore-certificate-errors-spki-list={spki_sha256(pki.server_cert)}"
    instance = playwright.chromium.launch(executable_path=chromium, args=[*CHROMIUM_ARGS, pin])
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="module")
def browser(playwright: Any, chromium: str, pki: PKI) -> Iterator[Any]:
    with chromium_trusting(playwright, chromium, pki) as instance:
        yield instance


class Page:
    """A test page in a context of its own, recording the page's script errors (this
    file's event-stream page, test_http2_graphql_browser.py's subscriptions page)."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        response = self.page.goto(url)
        assert response is not None and response.ok

    def outcome(self) -> str:
        """Wait until the page is done or a stream stalled; which one."""
        self.page.wait_for_selector('#status:not([data-state="running"])')
        return str(self.page.get_attribute("#status", "data-state"))

    def results(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = self.page.evaluate("window.results")
        return result

    def protocols(self) -> list[str]:
        """What the page's Performance API says each of its fetches went over: the page
        itself, then its resources (its event streams among them), as Chromium names the
        protocols ("h2", "http/1.1")."""
        result: list[str] = self.page.evaluate(
            "[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
            ".map(entry => entry.nextHopProtocol)"
        )
        return result

    def stream_errors(self) -> list[str]:
        result: list[str] = self.page.evaluate("window.errors")
        return result

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def close(self) -> None:
        try:
            assert self.errors == [], f"script errors on the page: {self.errors}"
        finally:
            self.context.close()


def page_url(server: ServerProcess, group: str) -> str:
    return f"https://127.0.0.1:{server.port}/page?group={group}&streams={STREAMS}&events={EVENTS}&wait={STREAMS}"


def expected_results() -> dict[str, list[str]]:
    return {str(i): [f"{i}:{k}" for k in range(EVENTS)] for i in range(STREAMS)}


def assert_quiet(server: ServerProcess) -> None:
    bad = [line for line in server.drain_output(0.1).splitlines() if ERROR_LINE.search(line) or " WARNING " in line]
    assert not bad, "\n".join(bad[:20])


# -- tests ------------------------------------------------------------------------------------


def test_twenty_event_streams_share_one_http2_connection(browser: Any, pki: PKI) -> None:
    with tls_server(pki) as server, App(server, pki) as app:
        group = token()
        page = Page(browser, page_url(server, group))
        try:
            state = page.outcome()
            assert state == "all-done", page.stream_errors()
            assert page.results() == expected_results()
            assert page.stream_errors() == []
            protocols = page.protocols()
        finally:
            page.close()
        assert protocols and set(protocols) == {"h2"}, protocols
        counted = app.stats(group)
        requests = counted["requests"]
        assert [r["path"] for r in requests] == ["/page"] + ["/sse"] * STREAMS
        assert {(r["http_version"], r["scheme"]) for r in requests} == {("2", "https")}
        assert len({r["port"] for r in requests}) == 1, requests  # the page and its 20 streams: one connection
        assert counted["peak"] == STREAMS and counted["open"] == 0  # all 20 in the app at once
        assert_quiet(server)


def test_over_http1_the_twenty_streams_stall_at_six_connections(browser: Any, pki: PKI) -> None:
    with tls_server(pki, "--http", "1") as server, App(server, pki) as app:
        group = token()
        page = Page(browser, page_url(server, group))
        try:
            # six streams reach the app and wait there for the other fourteen, which cannot come
            app.wait_for(group, f"{H1_CONNECTIONS} streams open", lambda s: s["open"] == H1_CONNECTIONS)
            app.release(group)
            state = page.outcome()
            assert state == "all-done", page.stream_errors()
            assert page.results() == expected_results()
            protocols = page.protocols()
        finally:
            page.close()
        assert protocols and set(protocols) == {"http/1.1"}, protocols
        counted = app.stats(group)
        requests = counted["requests"]
        assert [r["path"] for r in requests] == ["/page"] + ["/sse"] * STREAMS
        assert {(r["http_version"], r["scheme"]) for r in requests} == {("1.1", "https")}
        assert counted["peak"] == H1_CONNECTIONS  # never more at once, though the page asked for 20
        assert len({r["port"] for r in requests}) > 1, requests  # 6 in the runs seen, each reused
        assert_quiet(server)


def test_without_the_pin_chromium_refuses_the_test_certificate(playwright: Any, chromium: str, pki: PKI) -> None:
    from playwright.sync_api import Error

    with tls_server(pki) as server:
        instance = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = instance.new_page()
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                page.goto(f"https://127.0.0.1:{server.port}/hello", timeout=TIMEOUT_MS)
        finally:
            instance.close()
