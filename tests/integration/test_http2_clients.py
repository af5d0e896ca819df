"""HTTP/2 against a real ``python -m channelserver`` with nghttp2's own clients, ``nghttp``
and ``h2load`` (Debian ``nghttp2-client``; ``scripts/system-deps.sh`` installs it; missing
under ``CI=true`` is a failure, elsewhere a skip):

- ``nghttp -nv`` by prior knowledge in cleartext and over TLS (ALPN h2): the frames it
  prints are the server's SETTINGS, the ACK of the client's, HEADERS ``:status 200``,
  DATA with END_STREAM, and the client's GOAWAY NO_ERROR at exit, with no RST_STREAM or
  GOAWAY from the server. Over TLS nghttp verifies the server against the test CA
  (OpenSSL's ``SSL_CERT_FILE``; nghttp has no ``--cacert``): it is asked for
  ``localhost`` (the certificate's DNS name; nghttp 1.52 does not match an IP address
  against the certificate's IP SAN), and the same run against an empty trust store
  shows its "Certificate verification failed" warning, so the check is live;
- ``h2load`` bounded runs: 2000 requests on 4 connections of 20 streams, cleartext and
  TLS, all 2xx, none failed or errored, the server serving on afterwards with no
  warning or traceback in its log;
- one connection carrying 100 streams at once: ``/barrier`` answers only once 100 of its
  requests are in the app together, so 100 answers of 200 are the proof; a client asking
  for 200 at once is held to the 100 the server advertised;
- 50 server-sent-events streams on one nghttp connection: each holds until all 50 are
  open, then streams 10 events 20 ms apart; every stream gets every event in order, the
  DATA frames of all streams interleave, one client port serves all 50.

The app is tests/integration/h2_apps.py (one worker: it counts requests in the process).
A limit under the 100 streams a client opens before it reads the server's SETTINGS
refuses the streams over it one by one (RST_STREAM REFUSED_STREAM, RFC 9113 section
5.1.2), never the connection: the last test.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.wire import ERROR_LINE, token
from tests.demo.conftest import require_executable
from tests.integration.test_tls_proxy import PKI, make_pki
from tests.servers import ServerProcess, channelserver, tls_channelserver

pytestmark = pytest.mark.timeout(90)

APP = "tests.integration.h2_apps:app"


# -- servers ----------------------------------------------------------------------------------


def serve(*flags: str, pki: PKI | None = None) -> ServerProcess:
    """The test app on one worker, cleartext or (given ``pki``) TLS."""
    if pki is None:
        return channelserver(APP, "--workers", "1", *flags)
    return tls_channelserver(APP, pki.server_cert, pki.server_key, "--workers", "1", *flags)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cleartext() -> Iterator[ServerProcess]:
    with serve() as server:
        yield server


@pytest.fixture(scope="module")
def tls(pki: PKI) -> Iterator[ServerProcess]:
    with serve(pki=pki) as server:
        yield server


def base_url(server: ServerProcess, pki: PKI | None = None, host: str = "127.0.0.1") -> str:
    return f"{'https' if pki else 'http'}://{host}:{server.port}"


def verify(pki: PKI | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(pki.ca)) if pki else True


def stats(server: ServerProcess, group: str, pki: PKI | None = None) -> dict[str, Any]:
    """What the app counted for ``group`` (asked over HTTP/1.1, on a connection of its own)."""
    answer = httpx.get(f"{base_url(server, pki)}/stats", params={"group": group}, verify=verify(pki), timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def new_log(server: ServerProcess, mark: int) -> list[str]:
    """The server's log lines since ``mark`` (a length of its output)."""
    return server.drain_output(0.1)[mark:].splitlines()


def assert_quiet(lines: list[str]) -> None:
    """No warning, error or traceback."""
    bad = [line for line in lines if ERROR_LINE.search(line) or " WARNING " in line]
    assert not bad, "\n".join(bad[:20])


# -- the tools --------------------------------------------------------------------------------


def tool(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60, check: bool = True) -> str:
    """Run nghttp or h2load to the end (bounded); its output, stdout then stderr. With
    ``check``, it must exit 0."""
    binary = require_executable(name)
    done = subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 or not check, f"{name} exited with {done.returncode}:\n{output[-4000:]}"
    return output


@dataclass
class Frame:
    """One frame in ``nghttp -v`` output."""

    direction: str  # "send" or "recv"
    type: str
    length: int
    flags: int
    stream_id: int
    #: The indented lines under the frame line (flag names, settings, error code, headers).
    detail: list[str] = field(default_factory=list)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.detail)


FRAME_LINE = re.compile(r"^\[\s*[\d.]+\] (send|recv) (\w+) frame <length=(\d+), flags=(0x[0-9a-f]+), stream_id=(\d+)>")
HEADER_LINE = re.compile(r"^\[\s*[\d.]+\] recv \(stream_id=(\d+)\) (:?[\w-]+): (.*)$")


@dataclass
class NghttpRun:
    frames: list[Frame]
    #: ``(stream id, name, value)`` of every response header field nghttp printed.
    headers: list[tuple[int, str, str]]
    lines: list[str]

    def frames_of(self, direction: str, kind: str) -> list[Frame]:
        return [f for f in self.frames if f.direction == direction and f.type == kind]

    def statuses(self) -> list[str]:
        return [value for _, name, value in self.headers if name == ":status"]


def parse_nghttp(output: str) -> NghttpRun:
    frames: list[Frame] = []
    headers: list[tuple[int, str, str]] = []
    lines = output.splitlines()
    current: Frame | None = None
    for line in lines:
        if match := FRAME_LINE.match(line):
            direction, kind, length, flags, sid = match.groups()
            current = Frame(direction, kind, int(length), int(flags, 16), int(sid))
            frames.append(current)
        elif match := HEADER_LINE.match(line):
            headers.append((int(match.group(1)), match.group(2), match.group(3)))
            current = None
        elif line.startswith(" ") and current is not None:
            current.detail.append(line.strip())
        else:
            current = None
    return NghttpRun(frames, headers, lines)


END_STREAM = 0x1
ACK = 0x1


def assert_one_clean_exchange(run: NghttpRun, body_length: int) -> None:
    """The frames of one GET answered 200 with ``body_length`` bytes, and a clean goodbye."""
    server_settings = [f for f in run.frames_of("recv", "SETTINGS") if not f.flags & ACK]
    assert len(server_settings) == 1
    assert server_settings[0].has("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100")
    assert server_settings[0].has("SETTINGS_ENABLE_PUSH(0x02):0")
    # the server acknowledged the client's SETTINGS (before it answered: it read them first).
    # nghttp's own ACK of the server's is not checked: when the server's SETTINGS and the
    # whole response come in one read, nghttp ends the session with the ACK unsent.
    assert [f for f in run.frames_of("recv", "SETTINGS") if f.flags & ACK]
    request = run.frames_of("send", "HEADERS")
    assert len(request) == 1 and request[0].flags & END_STREAM
    sid = request[0].stream_id
    response = run.frames_of("recv", "HEADERS")
    assert [f.stream_id for f in response] == [sid]
    assert (sid, ":status", "200") in run.headers
    data = run.frames_of("recv", "DATA")
    assert [f.stream_id for f in data] == [sid]
    assert data[-1].flags & END_STREAM and sum(f.length for f in data) == body_length
    # nothing went wrong on the server's side; the client said goodbye at exit
    assert not run.frames_of("recv", "RST_STREAM") and not run.frames_of("recv", "GOAWAY")
    goaway = run.frames_of("send", "GOAWAY")
    assert len(goaway) == 1 and goaway[0].has("error_code=NO_ERROR(0x00)")


# -- nghttp -----------------------------------------------------------------------------------


def test_nghttp_by_prior_knowledge_in_cleartext(cleartext: ServerProcess) -> None:
    mark = len(cleartext.text)
    group = token()
    output = tool("nghttp", "-nv", f"{base_url(cleartext)}/hello?group={group}")
    assert "The negotiated protocol" not in output  # no TLS, no Upgrade: the preface first
    run = parse_nghttp(output)
    assert_one_clean_exchange(run, len(b"hello world"))
    assert [r["http_version"] for r in stats(cleartext, group)["requests"]] == ["2"]
    lines = new_log(cleartext, mark)
    assert any(re.search(rf'"GET /hello\?group={group} HTTP/2" 200', line) for line in lines), lines
    assert_quiet(lines)


def test_nghttp_over_tls_verifies_the_server_against_the_test_ca(tls: ServerProcess, pki: PKI, tmp_path: Path) -> None:
    mark = len(tls.text)
    group = token()
    url = f"{base_url(tls, pki, host='localhost')}/hello?group={group}"
    output = tool("nghttp", "-nv", url, env={"SSL_CERT_FILE": str(pki.ca)})
    assert "The negotiated protocol: h2" in output
    assert "Certificate verification failed" not in output, output
    assert_one_clean_exchange(parse_nghttp(output), len(b"hello world"))
    assert [(r["http_version"], r["scheme"]) for r in stats(tls, group, pki)["requests"]] == [("2", "https")]
    # the check above is live: with no trust in the test CA, nghttp says so (and goes on)
    empty = tmp_path / "no-ca.pem"
    empty.write_text("")
    untrusted = tool("nghttp", "-nv", url, env={"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": str(tmp_path)})
    assert "Certificate verification failed" in untrusted, untrusted
    assert_quiet(new_log(tls, mark))


# -- h2load -----------------------------------------------------------------------------------


H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load(url: str, *args: str) -> dict[str, Any]:
    """Run h2load; its counts: total, succeeded, failed, errored, timeout, 2xx..5xx, protocol."""
    output = tool("h2load", *args, url, timeout=120)
    requests = H2LOAD_REQUESTS.search(output)
    status = H2LOAD_STATUS.search(output)
    protocol = re.search(r"Application protocol: (\S+)", output)
    assert requests and status and protocol, output
    total, _, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    ok, redirect, client_error, server_error = map(int, status.groups())
    return {
        "total": total,
        "done": done,
        "succeeded": succeeded,
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "2xx": ok,
        "3xx": redirect,
        "4xx": client_error,
        "5xx": server_error,
        "protocol": protocol.group(1),
        "output": output,
    }


def assert_all_succeeded(result: dict[str, Any], count: int) -> None:
    counts = {k: v for k, v in result.items() if k != "output"}
    expected = {"total": count, "done": count, "succeeded": count, "2xx": count}
    expected |= {"failed": 0, "errored": 0, "timeout": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    assert {k: counts[k] for k in expected} == expected, result["output"]


@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "h2-tls"])
def test_h2load_bounded_run(secure: bool, request: pytest.FixtureRequest) -> None:
    server: ServerProcess = request.getfixturevalue("tls" if secure else "cleartext")
    pki: PKI | None = request.getfixturevalue("pki") if secure else None
    mark = len(server.text)
    group = token()
    # h2load does not verify the server's certificate: TLS here is for ALPN h2 and the load
    result = h2load(f"{base_url(server, pki)}/hello?group={group}", "-n", "2000", "-c", "4", "-m", "20")
    assert result["protocol"] == ("h2" if secure else "h2c")
    assert_all_succeeded(result, 2000)
    seen = stats(server, group, pki)["requests"]
    assert len(seen) == 2000 and {r["http_version"] for r in seen} == {"2"}
    assert len({r["port"] for r in seen}) == 4  # -c 4: four connections, 20 streams each
    # serving on, over HTTP/2 (nghttp) and HTTP/1.1 (httpx)
    after = token()
    env = {"SSL_CERT_FILE": str(pki.ca)} if pki else None
    assert_one_clean_exchange(
        parse_nghttp(tool("nghttp", "-nv", f"{base_url(server, pki, 'localhost')}/hello?group={after}", env=env)),
        len(b"hello world"),
    )
    plain = httpx.get(f"{base_url(server, pki)}/hello?group={after}", verify=verify(pki), timeout=10)
    assert plain.text == "hello world" and plain.http_version == "HTTP/1.1"
    assert [r["http_version"] for r in stats(server, after, pki)["requests"]] == ["2", "1.1"]
    assert_quiet(new_log(server, mark))


@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "h2-tls"])
def test_one_connection_carries_100_concurrent_streams(secure: bool, request: pytest.FixtureRequest) -> None:
    server: ServerProcess = request.getfixturevalue("tls" if secure else "cleartext")
    pki: PKI | None = request.getfixturevalue("pki") if secure else None
    mark = len(server.text)
    group = token()
    # each /barrier answers 200 only once 100 of them are in the app together (else 503
    # after 15 s): the first 100 prove it, the other 400 pass through once released. The
    # first flight (SETTINGS, WINDOW_UPDATE, 100 HEADERS) is more frames than the server
    # gives h2 in one event-loop turn: the rest of the read waits a turn, over TLS too.
    result = h2load(f"{base_url(server, pki)}/barrier?group={group}&wait=100", "-n", "500", "-c", "1", "-m", "100")
    assert_all_succeeded(result, 500)
    counted = stats(server, group, pki)
    assert counted["peak"] == 100 and counted["open"] == 0
    assert len({r["port"] for r in counted["requests"]}) == 1
    assert_quiet(new_log(server, mark))


def test_a_client_asking_for_200_streams_is_held_to_the_100_advertised(cleartext: ServerProcess) -> None:
    mark = len(cleartext.text)
    group = token()
    result = h2load(f"{cleartext.url}/barrier?group={group}&wait=100", "-n", "600", "-c", "1", "-m", "200")
    assert_all_succeeded(result, 600)
    counted = stats(cleartext, group)
    assert counted["peak"] == 100  # reached (the barrier opened), never passed
    assert_quiet(new_log(cleartext, mark))


def test_fifty_event_streams_run_at_once_on_one_nghttp_connection(cleartext: ServerProcess) -> None:
    mark = len(cleartext.text)
    group = token()
    streams, events = 50, 10
    urls = [f"{cleartext.url}/sse?group={group}&i={i}&events={events}&wait={streams}" for i in range(streams)]
    output = tool("nghttp", "-v", *urls)  # bodies and frames on stdout, line by line
    run = parse_nghttp(output)
    # what each stream delivered, in order: its events, then `done` (no stream `stalled`)
    got: dict[str, list[str]] = {}
    for line in run.lines:
        if match := re.fullmatch(r"data: (\d+):(\d+)", line):
            got.setdefault(match.group(1), []).append(match.group(2))
    assert got == {str(i): [str(k) for k in range(events)] for i in range(streams)}
    assert "event: stalled" not in output
    assert run.lines.count("event: done") == streams
    # one connection, 50 streams, all answered 200 as event streams
    requests = run.frames_of("send", "HEADERS")
    assert len(requests) == streams
    assert run.statuses() == ["200"] * streams
    assert sorted(v for _, name, v in run.headers if name == "content-type") == ["text/event-stream"] * streams
    # interleaved: every stream had sent an event before the first one ended
    data = run.frames_of("recv", "DATA")
    first_end = next(n for n, f in enumerate(data) if f.flags & END_STREAM)
    before = {f.stream_id for f in data[:first_end] if f.length > len(": open\n\n")}
    assert before == {f.stream_id for f in requests}
    assert len([f for f in data if f.flags & END_STREAM]) == streams
    assert not run.frames_of("recv", "RST_STREAM") and not run.frames_of("recv", "GOAWAY")
    counted = stats(cleartext, group)
    assert counted["peak"] == streams and counted["open"] == 0
    assert {(r["http_version"], r["path"]) for r in counted["requests"]} == {("2", "/sse")}
    assert len({r["port"] for r in counted["requests"]}) == 1
    assert_quiet(new_log(cleartext, mark))


# -- a limit below the first flight ------------------------------------------------------------


def test_streams_over_a_limit_below_100_are_refused_one_by_one_not_the_connection() -> None:
    """nghttp retries none of them: the streams over the limit end refused, the others 200."""
    with serve("--h2-max-concurrent-streams", "10") as server:
        group = token()
        # nghttp sends its 30 requests in its first flight, before it has read the server's SETTINGS
        output = tool("nghttp", "-nv", "-m", "30", f"{server.url}/hello?group={group}", check=False)
        run = parse_nghttp(output)
        goaway = run.frames_of("recv", "GOAWAY")
        assert not [f for f in goaway if f.has("PROTOCOL_ERROR")], output
        assert run.statuses().count("200") >= 10, output
        refused = [f for f in run.frames_of("recv", "RST_STREAM") if f.has("REFUSED_STREAM")]
        assert len(refused) + run.statuses().count("200") == 30, output
