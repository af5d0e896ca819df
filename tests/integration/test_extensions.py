"""The ASGI extensions ``http.response.pathsend`` and ``http.response.early_hint`` on a real
server, over HTTP/1.1 and HTTP/2 (by prior knowledge), with httpx and curl."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess, channelserver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with channelserver("extensions_app:app", env={"PYTHONPATH": str(Path(__file__).parent)}) as proc:
        yield proc


def clients(server: ServerProcess) -> list[httpx.Client]:
    return [
        httpx.Client(base_url=server.url, timeout=20),
        httpx.Client(base_url=server.url, timeout=20, http1=False, http2=True),  # h2c by prior knowledge
    ]


@pytest.mark.parametrize("size", [0, 1000, 3 * 1024 * 1024 + 17])
def test_pathsend_sends_the_whole_file_over_http1_and_http2(server: ServerProcess, tmp_path: Path, size: int) -> None:
    path = tmp_path / "file.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    for client in clients(server):
        with client:
            answer = client.get("/pathsend", params={"path": str(path)})
        assert answer.status_code == 200
        assert answer.headers["x-offered"] == "yes"
        assert answer.content == data
        if size < 256 * 1024:  # read in one part: the whole response, with its length
            assert answer.headers["content-length"] == str(size)


def test_pathsend_of_a_missing_file_fails_the_app_and_the_server_serves_on(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        with pytest.raises(httpx.HTTPError):
            # the head was committed with the pathsend: it goes out and the connection
            # closes, as for any app that fails mid-response
            answer = client.get("/pathsend", params={"path": "/nonexistent/file"})
            answer.read()
            assert answer.status_code != 200
        assert client.get("/pathsend", params={"path": __file__}).status_code == 200
    assert re.search(r"Exception in app instance .* for GET /pathsend", server.drain_output())


@pytest.mark.parametrize("flag", ["--http1.1", "--http2-prior-knowledge"])
def test_early_hint_is_a_103_with_the_links_before_the_response(server: ServerProcess, flag: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed (Debian package curl)")
    done = subprocess.run(
        [curl, "-sS", "-v", flag, f"{server.url}/early-hint"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "page"
    heads = re.findall(r"^< (HTTP/[\d.]+ \d+)", done.stderr, re.M)
    assert [h.split()[1] for h in heads] == ["103", "200"], done.stderr
    assert "< link: </style.css>; rel=preload; as=style" in done.stderr
    assert "< link: </app.js>; rel=preload; as=script" in done.stderr


def test_an_http10_client_gets_no_early_hint(server: ServerProcess) -> None:
    import socket

    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /early-hint HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert b" 103 " not in data
