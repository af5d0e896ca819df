"""``runchannelserver`` with Django's autoreloader: a code change restarts the server,
connected WebSocket clients get close 1012 (so they reconnect instead of seeing a dropped
socket), the new code serves the next connection on the same port, and Ctrl+C in a
terminal (SIGINT to the whole process group) still exits 0.

The project is a copy of ``basic`` in tmp_path, because the test edits its consumer.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.django_projects.harness import BASIC, ROOT, copy_project, project_env
from tests.servers import ServerProcess

#: Start the command as the leader of its own process group, as a shell does, so the
#: test can send SIGINT to the group the way a terminal's Ctrl+C does.
#: Runs the command as a process group leader (the test signals the whole group, as a
#: terminal's Ctrl+C does), with SIGINT's default disposition: a test suite started in the
#: background by a shell inherits SIGINT ignored, and Django's reloader, which leaves that
#: to Python's default handler, would then never see the Ctrl+C.
AS_GROUP_LEADER = (
    "import os, signal, sys; os.setpgrp(); signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def banners(count: int) -> re.Pattern[bytes]:
    """Output holding ``count`` banners (one per start of the server)."""
    one = rb"Quit the server with CONTROL-C\."
    return re.compile(rb"[\s\S]*".join([one] * count))


def rewrite_consumer(server: ServerProcess, project: Path, body: str) -> None:
    """Replace the consumer module (its mtime moving forward) and wait until the
    reloader reports the change.

    Django's StatReloader compares each file's mtime with its previous snapshot, once a
    second. A file written while the first snapshot is being taken can be recorded with
    its new mtime and never reported; so if no report comes within two ticks, the file
    is touched again (at most three times).
    """
    path = project / "basic" / "consumers.py"
    # runchannelserver's line when it closes connections, Django's when it reloads.
    report = rb"consumers\.py changed[:,]"
    seen = len(re.findall(report, server.output))
    for attempt in range(3):
        before = path.stat().st_mtime
        if attempt == 0:
            path.write_text(body)
        os.utime(path, (before + 2, before + 2))
        try:
            server.wait_for(re.compile(rb"(?:%s[\s\S]*){%d}" % (report, seen + 1)), 2.5)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"the reloader never reported the change:\n{server.text}")


CONSUMER = (
    "from channels.generic.websocket import AsyncWebsocketConsumer\n\n"
    'VERSION = "{version}"\n\n\n'
    "class EchoConsumer(AsyncWebsocketConsumer):\n"
    "    async def receive(self, text_data=None, bytes_data=None):\n"
    '        await self.send(text_data=f"{{VERSION}}:{{text_data}}")\n'
)


@pytest.fixture
def reloading_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    project = copy_project(BASIC, tmp_path)
    server = ServerProcess(
        [sys.executable, "-c", AS_GROUP_LEADER, "manage.py", "runchannelserver", "127.0.0.1:0"],
        cwd=project,
        env={**project_env(tmp_path), "PYTHONPATH": f"{project}:{ROOT}"},
    )
    try:
        server.wait_for(banners(1), 20)
        yield server, project
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
        server.close()


def echo(server: ServerProcess, text: str) -> str:
    with connect(f"{server.ws_url}/ws/echo/", origin=server.url, open_timeout=10) as ws:
        ws.send(text)
        return str(ws.recv(timeout=5))


def test_code_change_closes_websockets_with_1012_then_serves_new_code(
    reloading_server: tuple[ServerProcess, Path],
) -> None:
    server, project = reloading_server
    assert "Watching for file changes with StatReloader" in server.text
    with connect(f"{server.ws_url}/ws/echo/", origin=server.url, open_timeout=5) as ws:
        ws.send("a")
        assert ws.recv(timeout=5) == "v1:a"

        changed = time.monotonic()
        rewrite_consumer(server, project, CONSUMER.format(version="v2"))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        closed_after = time.monotonic() - changed
    assert closed.value.rcvd is not None, "the server dropped the socket without a close frame"
    assert closed.value.rcvd.code == 1012
    assert closed.value.rcvd.reason

    # Same port: the reloader's parent holds the socket across restarts. A connection made
    # while the new process starts waits in the listen queue and is served by the new code.
    assert echo(server, "b") == "v2:b"
    served_after = time.monotonic() - changed
    server.wait_for(banners(2), 10)
    assert server.text.count(f"at http://127.0.0.1:{server.port}/") == 2
    assert "consumers.py changed" in server.text
    assert "Traceback" not in server.text
    # A stat reloader tick (1 s) plus a Django start; generous for a loaded 2-core CI box.
    assert closed_after < 5.0
    assert served_after < 15.0
    print(f"1012 after {closed_after:.2f}s, new code served after {served_after:.2f}s")


def test_broken_code_is_reported_and_the_fix_is_picked_up(reloading_server: tuple[ServerProcess, Path]) -> None:
    server, project = reloading_server
    rewrite_consumer(server, project, "def broken(:\n")
    server.wait_for(re.compile(rb"SyntaxError: invalid syntax"), 15)
    rewrite_consumer(server, project, CONSUMER.format(version="v3"))
    assert echo(server, "c") == "v3:c"


def test_ctrl_c_exits_0(reloading_server: tuple[ServerProcess, Path]) -> None:
    server, _ = reloading_server
    assert echo(server, "x") == "v1:x"
    started = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGINT)
    code = server.wait(10)
    took = time.monotonic() - started
    assert code == 0, server.text
    assert took < 2.0, f"Ctrl+C took {took:.2f}s"
    assert "Traceback" not in server.text


def test_configuration_error_is_one_line_and_the_reloader_waits(tmp_path: Path) -> None:
    project = copy_project(BASIC, tmp_path)
    with ServerProcess(
        [sys.executable, "manage.py", "runchannelserver", "127.0.0.1:0"],
        cwd=project,
        env={**project_env(tmp_path, BASIC_ASGI="-"), "PYTHONPATH": f"{project}:{ROOT}"},
        wait_for_port=False,
    ) as server:
        server.wait_for(re.compile(rb"Waiting for a file change to restart\."), 20)
        assert server.proc.poll() is None  # still watching, as runserver does
    assert "Error: settings.ASGI_APPLICATION is not set" in server.text
    assert "Traceback" not in server.text
