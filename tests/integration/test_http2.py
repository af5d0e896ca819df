"""HTTP/2 against a real ``python -m channelserver``, with real clients: curl over TLS (ALPN
h2, a CA made here) and by prior knowledge in cleartext, httpx with ``http2=True``, and a
raw client on ``h2`` where the frames are the point (a stream reset, a rapid-reset flood,
the GOAWAY of a graceful shutdown). The machine's own rules are unit-tested in
tests/unit/protocol/test_http2.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from hyperframe.frame import DataFrame, Frame

from tests.apps.wire import records, token
from tests.integration.test_tls_proxy import PKI, make_pki
from tests.servers import ServerProcess, channelserver, tls_channelserver

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")


def need_curl() -> str:
    if CURL is None:
        pytest.fail("curl is needed (Debian package curl)")
    return CURL


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cleartext() -> Iterator[ServerProcess]:
    with channelserver("core_app:app") as server:
        yield server


def tls_server(pki: PKI, *flags: str) -> ServerProcess:
    return tls_channelserver("core_app:app", pki.server_cert, pki.server_key, *flags)


@pytest.fixture(scope="module")
def tls(pki: PKI) -> Iterator[ServerProcess]:
    with tls_server(pki) as server:
        yield server


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_curl(), "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=30, check=False
    )


class RawH2:
    """A cleartext HTTP/2 client on ``h2``, reading frames as they come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.events: list[Any] = []
        self.leftover = b""

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def request(self, path: str, method: str = "GET", end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "test")]
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def read_until(self, done: Any) -> list[Any]:
        """Read and handle frames, whole ones only, until ``done(events so far)``, a GOAWAY
        (h2's client takes nothing after one: the rest stays in ``leftover``) or EOF."""
        while not done(self.events):
            data = self.sock.recv(65536)
            if not data:
                break
            self.leftover += data
            while len(self.leftover) >= 9:
                end = 9 + int.from_bytes(self.leftover[:3], "big")
                if len(self.leftover) < end:
                    break
                frame, self.leftover = self.leftover[:end], self.leftover[end:]
                self.events.extend(self.conn.receive_data(frame))
                if any(isinstance(e, h2.events.ConnectionTerminated) for e in self.events):
                    return self.events
            self.flush()
        return self.events

    def frames_to_eof(self) -> list[Any]:
        """The frames the server sends until it closes, parsed with hyperframe."""
        data = self.leftover
        while chunk := self.sock.recv(65536):
            data += chunk
        frames = []
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            frame.parse_body(memoryview(data[9 : 9 + length]))
            frames.append(frame)
            data = data[9 + length :]
        return frames

    def body(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)

    def ended(self, sid: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in self.events)

    def close(self) -> None:
        self.sock.close()


# -- negotiation ------------------------------------------------------------------------------


def test_curl_by_prior_knowledge_gets_http2_in_cleartext(cleartext: ServerProcess) -> None:
    done = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", f"{cleartext.url}/scope/x")
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2"
    scope = json.loads(body)
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET" and scope["path"] == "/scope/x"
    assert scope["scheme"] == "http"
    # and HTTP/1.1 on the same port, as before
    plain = httpx.get(f"{cleartext.url}/scope/y", timeout=10)
    assert plain.http_version == "HTTP/1.1" and plain.json()["http_version"] == "1.1"
    assert re.search(r'"GET /scope/x HTTP/2" 200', cleartext.drain_output())


def test_curl_upgrades_to_h2c_from_http1(cleartext: ServerProcess) -> None:
    """``curl --http2`` on http:// asks ``Upgrade: h2c``: a bodiless request becomes
    stream 1 of an HTTP/2 connection, answered there after the 101."""
    done = curl("--http2", "-v", "-w", "\n%{http_version}", f"{cleartext.url}/scope/upgraded?q=1")
    assert done.returncode == 0, done.stderr
    assert "< HTTP/1.1 101 Switching Protocols" in done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2"
    scope = json.loads(body)
    assert (scope["http_version"], scope["path"], scope["query_string"]) == ("2", "/scope/upgraded", "q=1")
    names = [name for name, _ in scope["headers"]]
    assert "http2-settings" not in names and "upgrade" not in names and "connection" not in names
    # a request with a body is not upgraded (the body would come before the switch)
    posted = curl("--http2", "-v", "--data-binary", "abc", "-w", "\n%{http_version}", f"{cleartext.url}/body")
    assert posted.stdout.endswith("\n1.1"), posted.stderr
    assert json.loads(posted.stdout.rpartition("\n")[0])["body"] == "abc"


def test_a_bad_http2_settings_header_is_a_400(cleartext: ServerProcess) -> None:
    assert cleartext.port is not None
    with socket.create_connection(("127.0.0.1", cleartext.port), timeout=10) as sock:
        sock.sendall(
            b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: !!!not-base64!!!\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert re.search(r"Invalid h2c upgrade from 127\.0\.0\.1:\d+: an HTTP2-Settings header", cleartext.drain_output())
    assert httpx.get(f"{cleartext.url}/hello", timeout=10).text == "hello world"


def test_curl_over_tls_negotiates_h2_by_alpn(tls: ServerProcess, pki: PKI) -> None:
    done = curl("--http2", "--cacert", str(pki.ca), "-w", "\n%{http_version}", f"https://127.0.0.1:{tls.port}/scope/t")
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2"
    assert json.loads(body)["scheme"] == "https"
    # a client that offers only http/1.1 gets it
    old = curl("--http1.1", "--cacert", str(pki.ca), "-w", "\n%{http_version}", f"https://127.0.0.1:{tls.port}/hello")
    assert old.stdout.endswith("\n1.1"), old


def test_http_1_turns_http2_off(pki: PKI) -> None:
    with tls_server(pki, "--http", "1") as server:
        done = curl(
            "--http2", "--cacert", str(pki.ca), "-w", "\n%{http_version}", f"https://127.0.0.1:{server.port}/hello"
        )
        assert done.stdout.endswith("\n1.1"), done


def test_http_2_alone_answers_http1_with_505() -> None:
    with channelserver("core_app:app", "--http", "2") as server:
        old = curl("--http1.1", "-w", "\n%{http_code}", f"{server.url}/hello")
        assert old.stdout.endswith("\n505"), old
        new = curl("--http2-prior-knowledge", f"{server.url}/hello")
        assert new.stdout == "hello world", new


# -- streams ----------------------------------------------------------------------------------


def test_httpx_runs_many_concurrent_streams_over_one_tls_connection(tls: ServerProcess, pki: PKI) -> None:
    verify = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(http2=True, verify=verify, base_url=f"https://127.0.0.1:{tls.port}", timeout=20) as client:
        results: list[tuple[int, str, str]] = []
        lock = threading.Lock()

        def get(n: int) -> None:
            answer = client.get(f"/slow?ms=200&n={n}")
            with lock:
                results.append((answer.status_code, answer.http_version, answer.text))

        threads = [threading.Thread(target=get, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 20
        assert {(status, version) for status, version, _ in results} == {(200, "HTTP/2")}
        # a large upload and its echo, through both sides' flow control
        body = bytes(range(256)) * 12288  # 3 MiB: more than one window
        answer = client.post("/body", content=body)
        assert answer.status_code == 200 and answer.http_version == "HTTP/2"
        assert answer.json()["body"].encode("latin-1") == body
    # twenty at once, each 200 ms, took one connection: every access line names one client port
    lines = re.findall(r'127\.0\.0\.1:(\d+) - "GET /slow\?ms=200&n=\d+ HTTP/2" 200', tls.drain_output())
    assert len(lines) == 20 and len(set(lines)) == 1


def test_a_reset_stream_tells_its_app_only_and_the_connection_serves_on(cleartext: ServerProcess) -> None:
    assert cleartext.port is not None
    key = token()
    client = RawH2(cleartext.port)
    try:
        waiting = client.request(f"/wait-disconnect?token={key}")
        assert records(cleartext.url, f"{key}:started") == [True]
        other = client.request("/hello")
        client.read_until(lambda _: client.ended(other))
        assert client.body(other) == b"hello world"
        client.conn.reset_stream(waiting)
        client.flush()
        assert records(cleartext.url, f"{key}:received") == [{"type": "http.disconnect"}]
        again = client.request("/hello")
        client.read_until(lambda _: client.ended(again))
        assert client.body(again) == b"hello world"
    finally:
        client.close()


def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm_and_harms_no_one_else(cleartext: ServerProcess) -> None:
    assert cleartext.port is not None
    client = RawH2(cleartext.port)
    try:
        for _ in range(260):
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(
                sid, [(":method", "GET"), (":path", "/slow?ms=1000"), (":scheme", "http"), (":authority", "t")]
            )
            client.conn.reset_stream(sid)
        client.flush()
        events = client.read_until(lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev))
    finally:
        client.close()
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert httpx.get(f"{cleartext.url}/hello", timeout=10).text == "hello world"
    assert re.search(
        r"WARNING HTTP/2 flood from 127\.0\.0\.1:\d+: \d+ streams reset by the client, 0 responses completed "
        r"\(sent GOAWAY ENHANCE_YOUR_CALM\)",
        cleartext.drain_output(),
    )


def test_a_graceful_shutdown_sends_goaway_and_lets_the_stream_in_flight_finish() -> None:
    with channelserver("core_app:app") as server:
        assert server.port is not None
        client = RawH2(server.port)
        try:
            sid = client.request("/slow?ms=1000")
            client.read_until(lambda ev: any(isinstance(e, h2.events.SettingsAcknowledged) for e in ev))
            server.signal(signal.SIGTERM)
            client.read_until(lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev))
            goaway = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
            assert goaway[0].error_code == h2.errors.ErrorCodes.NO_ERROR
            assert goaway[0].last_stream_id == sid  # the stream in flight is named: it is served
            # h2's client takes no frame after a GOAWAY: the rest is read frame by frame
            frames = client.frames_to_eof()
        finally:
            client.close()
        data = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == sid)
        assert data == b"/slow"
        assert any("END_STREAM" in f.flags for f in frames if f.stream_id == sid)
        assert server.wait() == 0, server.text
