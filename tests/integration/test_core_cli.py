"""``python -m channelserver`` as a user starts it (issue 2, item 2 and the test plan).

A bad flag value or an app that cannot be imported: one clear line naming it, a non-zero
exit, no traceback. ``--port 0`` logs the port it bound; ``--uds`` serves on a Unix socket.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from tests.apps.wire import RawConnection  # noqa: E402
from tests.servers import PYTHON, ServerProcess, channelserver  # noqa: E402

APPS = ROOT / "tests" / "apps"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{ROOT}:{APPS}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [PYTHON, "-m", "channelserver", *args], capture_output=True, text=True, timeout=30, cwd=ROOT, env=env
    )


def meaningful_lines(text: str) -> list[str]:
    """Output lines other than argparse's usage block."""
    lines = []
    in_usage = False
    for line in text.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "eighty", "core_app:app"], ["port", "eighty"]),
        (["--port", "70000", "core_app:app"], ["port", "70000"]),
        (["--ws-ping-interval", "soon", "core_app:app"], ["ws_ping_interval", "soon"]),
        (["--lifespan", "maybe", "core_app:app"], ["lifespan", "maybe"]),
        (["--keep-alive-timeout", "-1", "core_app:app"], ["keep_alive_timeout", "-1"]),
    ],
)
def test_bad_flag_value_is_one_clear_line(args: list[str], named: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = meaningful_lines(output)
    assert len(lines) == 1, output
    for word in named:
        assert word in lines[0].replace("-", "_") or word in lines[0], output


@pytest.mark.parametrize(
    ("app", "named"),
    [
        ("no_such_module:app", "no_such_module"),
        ("core_app:no_such_app", "no_such_app"),
        ("core_app", "module:attribute"),
    ],
)
def test_unimportable_app_is_one_clear_line(app: str, named: str) -> None:
    result = run_cli("--port", "0", app)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = meaningful_lines(output)
    assert len(lines) == 1 and named in lines[0], output


def test_app_module_that_raises_on_import_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('settings are missing')\n")
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [PYTHON, "-m", "channelserver", "--port", "0", "broken_app:app"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = meaningful_lines(output)
    assert len(lines) == 1 and "broken_app" in lines[0] and "settings are missing" in lines[0], output


def test_port_0_logs_the_bound_port() -> None:
    with channelserver("core_app:app") as server:
        assert server.port not in (None, 0)
        assert re.search(rf"Listening on http://127\.0\.0\.1:{server.port} \(pid \d+\)", server.text)
        with RawConnection(server.port) as conn:
            conn.request("GET", "/hello")
            assert conn.read_response().body == b"hello world"
        assert server.stop() == 0


def test_uds(tmp_path: Path) -> None:
    path = str(tmp_path / "cs.sock")
    proc = ServerProcess([PYTHON, "-m", "channelserver", "--uds", path, "core_app:app"], wait_for_port=False)
    with proc:
        proc.wait_for(re.compile(rb"Listening on unix:" + re.escape(path.encode())))
        with RawConnection(uds=path) as conn:
            conn.request("GET", "/scope")
            response = conn.read_response()
        assert response.status == 200
        assert response.json()["type"] == "http"
        assert proc.stop() == 0
