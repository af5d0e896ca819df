"""``manage.py runchannelserver``: real server subprocesses of real Django projects.

What a Django developer meets: the banner with the bound port, HTTP through Django and a
WebSocket consumer, Ctrl+C, static files, settings under command options, runserver's
error sentences, the access log, ``--workers``, a fresh ``startproject`` project in a
virtualenv without Daphne, and every Config option reachable from the CLI, the command
and the settings from one definition.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from channelserver.config import options
from tests.django_projects.harness import (
    BASIC,
    ROOT,
    fresh_venv,
    manage,
    project_env,
    subprocess_env,
)
from tests.servers import ServerProcess

BANNER_END = re.compile(rb"Quit the server with CONTROL-C\.")
#: runserver's time stamp, then the server's access line.
HTTP_LINE = re.compile(
    r'^\[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] 127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200 \d+\.\dms$', re.M
)


def runchannelserver(tmp_path: Path, *args: str, project: Path = BASIC, **env: str) -> ServerProcess:
    """``manage.py runchannelserver 127.0.0.1:0 --noreload *args``, banner printed."""
    server = ServerProcess(
        [sys.executable, "manage.py", "runchannelserver", "127.0.0.1:0", "--noreload", *args],
        cwd=project,
        env={**project_env(tmp_path, **env), "PYTHONPATH": f"{project}:{ROOT}"},
    )
    server.wait_for(BANNER_END, 15)
    return server


def echo(server: ServerProcess, text: str = "hi") -> str:
    with connect(f"{server.ws_url}/ws/echo/", origin=server.url, open_timeout=5) as ws:
        ws.send(text)
        return str(ws.recv(timeout=5))


def stop_with_ctrl_c(server: ServerProcess) -> tuple[int, float]:
    started = time.monotonic()
    code = server.stop(signal.SIGINT, timeout=5)
    return code, time.monotonic() - started


# -- the developer's first run -----------------------------------------------------------


def test_banner_http_websocket_access_log_and_ctrl_c(tmp_path: Path) -> None:
    with runchannelserver(tmp_path) as server:
        banner = server.text
        assert "Django version " in banner
        assert "using settings 'basic.settings'" in banner
        assert "Starting ASGI/channelserver version " in banner
        assert f" at http://127.0.0.1:{server.port}/\n" in banner
        assert "Performing system checks..." in banner

        response = httpx.get(server.url + "/", timeout=5)
        assert response.status_code == 200
        assert response.text == "basic ok\n"
        assert response.headers["server"] == "channelserver"
        assert echo(server, "hello") == "v1:hello"

        code, took = stop_with_ctrl_c(server)
    assert code == 0
    assert took < 1.0, f"Ctrl+C took {took:.2f}s"
    assert "Traceback" not in server.text
    assert HTTP_LINE.search(server.text), server.text
    assert "\x1b[" not in server.text  # no colour when the output is not a terminal


def test_websocket_access_lines(tmp_path: Path) -> None:
    """A rejected handshake (no Origin: AllowedHostsOriginValidator says no) and an
    accepted WebSocket, with the close code the client sent."""
    with runchannelserver(tmp_path) as server:
        with pytest.raises(InvalidStatus) as rejected:
            connect(f"{server.ws_url}/ws/echo/", open_timeout=5)
        assert rejected.value.response.status_code == 403
        server.wait_for(re.compile(rb'127\.0\.0\.1:\d+ - "WebSocket rejected /ws/echo/" closed \S+ \d+\.\dms'), 5)
        with connect(f"{server.ws_url}/ws/echo/", origin=server.url, open_timeout=5) as ws:
            ws.send("x")
            ws.recv(timeout=5)
            ws.close(4001, "client done")
        server.wait_for(re.compile(rb'"WebSocket accepted /ws/echo/" closed'), 5)
    assert re.search(
        r'^\[[^\]]+\] 127\.0\.0\.1:\d+ - "WebSocket accepted /ws/echo/" closed 4001 \d+\.\dms$', server.text, re.M
    ), server.text


def test_fresh_startproject_in_a_virtualenv_without_daphne(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path)
    probe = subprocess.run(
        [str(python), "-c", "import channelserver, channels, django; import daphne"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "No module named 'daphne'" in probe.stderr  # the venv holds only what is needed

    site = tmp_path / "site"
    site.mkdir()
    subprocess.run([str(python), "-m", "django", "startproject", "mysite", str(site)], check=True, timeout=60)
    settings = site / "mysite" / "settings.py"
    text = settings.read_text()
    text = text.replace("INSTALLED_APPS = [\n", 'INSTALLED_APPS = [\n    "channels",\n    "channelserver",\n', 1)
    text += '\nASGI_APPLICATION = "mysite.asgi.application"\n'
    settings.write_text(text)
    (site / "mysite" / "consumers.py").write_text(
        "from channels.generic.websocket import WebsocketConsumer\n\n\n"
        "class EchoConsumer(WebsocketConsumer):\n"
        "    def receive(self, text_data=None, bytes_data=None):\n"
        "        self.send(text_data='echo:' + text_data)\n"
    )
    (site / "mysite" / "asgi.py").write_text(
        "import os\n\n"
        "from django.core.asgi import get_asgi_application\n\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"
        "django_asgi_app = get_asgi_application()\n\n"
        "from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402\n"
        "from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402\n"
        "from django.urls import path  # noqa: E402\n\n"
        "from mysite.consumers import EchoConsumer  # noqa: E402\n\n"
        "application = ProtocolTypeRouter({\n"
        "    'http': django_asgi_app,\n"
        "    'websocket': AllowedHostsOriginValidator(URLRouter([path('ws/echo/', EchoConsumer.as_asgi())])),\n"
        "})\n"
    )

    with ServerProcess(
        [str(python), "manage.py", "runchannelserver", "127.0.0.1:0", "--noreload"],
        cwd=site,
        env={"PYTHONPATH": str(site), "WEB_CONCURRENCY": "1"},
    ) as server:
        server.wait_for(BANNER_END, 15)
        assert f"at http://127.0.0.1:{server.port}/" in server.text
        response = httpx.get(server.url + "/", timeout=5)
        assert response.status_code == 200
        assert "The install worked successfully!" in response.text
        assert echo(server, "x") == "echo:x"
        code, took = stop_with_ctrl_c(server)
    assert code == 0
    assert took < 1.0, f"Ctrl+C took {took:.2f}s"
    assert "Traceback" not in server.text


# -- static files, settings and options ----------------------------------------------------


@pytest.mark.parametrize(
    ("debug", "flags", "status"),
    [("1", (), 200), ("1", ("--nostatic",), 404), ("0", ("--insecure",), 200)],
    ids=["debug", "nostatic", "insecure"],
)
def test_static_files(tmp_path: Path, debug: str, flags: tuple[str, ...], status: int) -> None:
    with runchannelserver(tmp_path, *flags, BASIC_DEBUG=debug) as server:
        response = httpx.get(server.url + "/static/basic/hello.txt", timeout=5)
        assert response.status_code == status
        if status == 200:
            assert response.text == "hello static\n"
        assert echo(server) == "v1:hi"  # WebSocket passes the static handler untouched


def test_options_override_settings_override_defaults(tmp_path: Path) -> None:
    settings = json.dumps({"server_header": False})
    with runchannelserver(tmp_path, BASIC_CHANNELSERVER=settings) as server:
        assert "server" not in httpx.get(server.url + "/", timeout=5).headers
    with runchannelserver(tmp_path, "--server-header", BASIC_CHANNELSERVER=settings) as server:
        assert httpx.get(server.url + "/", timeout=5).headers["server"] == "channelserver"


def test_settings_host_and_port_apply_without_addrport(tmp_path: Path) -> None:
    settings = json.dumps({"host": "127.0.0.1", "port": 0})
    with ServerProcess(
        [sys.executable, "manage.py", "runchannelserver", "--noreload"],
        cwd=BASIC,
        env={**project_env(tmp_path, BASIC_CHANNELSERVER=settings), "PYTHONPATH": f"{BASIC}:{ROOT}"},
    ) as server:
        server.wait_for(BANNER_END, 15)
        assert server.port != 8000
        assert f"at http://127.0.0.1:{server.port}/" in server.text
        assert echo(server) == "v1:hi"


def test_project_logging_configures_the_access_log(tmp_path: Path) -> None:
    with runchannelserver(tmp_path, BASIC_LOGGING="custom") as server:
        httpx.get(server.url + "/", timeout=5)
        server.wait_for(re.compile(rb"PROJECT-ACCESS 127\.0\.0\.1:\d+ - \"GET / HTTP/1\.1\" 200"), 5)
    assert not HTTP_LINE.search(server.text)


def test_access_log_is_coloured_on_request(tmp_path: Path) -> None:
    with runchannelserver(tmp_path, "--force-color") as server:
        httpx.get(server.url + "/", timeout=5)
        httpx.get(server.url + "/missing/", timeout=5)
        server.wait_for(re.compile(rb'"GET /missing/ HTTP/1\.1" 404'), 5)
    # HTTP_SUCCESS is the default palette's plain text; HTTP_NOT_FOUND is yellow.
    assert re.search(
        r'\x1b\[33m\[[^\]]+\] 127\.0\.0\.1:\d+ - "GET /missing/ HTTP/1\.1" 404 [\d.]+ms\x1b\[0m', server.text
    )


# -- errors as Django users expect them ------------------------------------------------


@pytest.fixture
def busy_port() -> object:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["abc:de:f"], {}, '"abc:de:f" is not a valid port number or address:port pair.'),
        (["70000"], {}, "port=70000 is not between 0 and 65535"),
        (["127.0.0.1:0", "--workers", "four"], {}, "workers='four' is not an integer"),
        (["127.0.0.1:0", "--lifespan", "maybe"], {}, "argument --lifespan: invalid choice: 'maybe'"),
        (
            ["127.0.0.1:0", "--workers", "2"],
            {},
            "--workers 2 runs worker processes, which the autoreloader cannot restart: add --noreload.",
        ),
        (
            ["127.0.0.1:0", "--noreload"],
            {"BASIC_CHANNELSERVER": '{"worker": 2}'},
            "unknown key 'worker' in settings.CHANNELSERVER; did you mean 'workers'?",
        ),
        (
            ["127.0.0.1:0", "--noreload"],
            {"BASIC_CHANNELSERVER": '{"ws_ping_interval": "often"}'},
            "settings.CHANNELSERVER: ws_ping_interval='often' is not a number",
        ),
        (["127.0.0.1:0", "--noreload"], {"BASIC_ASGI": "-"}, "settings.ASGI_APPLICATION is not set"),
        (
            ["127.0.0.1:0", "--noreload"],
            {"BASIC_ASGI": "basic.missing.application"},
            "settings.ASGI_APPLICATION = 'basic.missing.application' could not be imported: "
            "ModuleNotFoundError: No module named 'basic.missing'",
        ),
    ],
    ids=[
        "addrport",
        "port-range",
        "int-option",
        "choice",
        "workers-reload",
        "unknown-key",
        "bad-value",
        "no-asgi-application",
        "asgi-import-error",
    ],
)
def test_command_errors(tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = manage(BASIC, "runchannelserver", *args, env=project_env(tmp_path, **env), timeout=30)
    assert result.returncode in (1, 2), result.stdout
    assert message in result.stdout
    assert "Traceback" not in result.stdout


def test_port_already_in_use(tmp_path: Path, busy_port: int) -> None:
    for flags in (["--noreload"], []):  # bound by the command itself, or by the reloader's parent
        result = manage(BASIC, "runchannelserver", f"127.0.0.1:{busy_port}", *flags, env=project_env(tmp_path))
        assert result.returncode == 1
        assert f"CommandError: Error binding 127.0.0.1:{busy_port}: That port is already in use." in result.stdout
        assert "Traceback" not in result.stdout


def test_ipv6_addrport(tmp_path: Path) -> None:
    """``[::1]:0``, runserver's IPv6 form: served on ::1, or runserver's sentence when the
    machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        has_ipv6 = True
    except OSError:
        has_ipv6 = False
    env = project_env(tmp_path)
    command = [sys.executable, "manage.py", "runchannelserver", "[::1]:0", "--noreload"]
    proc = subprocess.Popen(
        command,
        cwd=BASIC,
        env=subprocess_env(env, BASIC),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        output = ""
        for line in proc.stdout:
            output += line
            if "Quit the server" in line or "CommandError" in line:
                break
        if has_ipv6:
            match = re.search(r"at http://\[::1\]:(\d+)/", output)
            assert match, output
            response = httpx.get(f"http://[::1]:{match.group(1)}/", timeout=5, headers={"host": "localhost"})
            assert response.status_code == 200
        else:
            assert "That IP address can't be assigned to." in output
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) in (0, 1)
        if proc.stdout is not None:
            proc.stdout.close()


def test_skip_checks(tmp_path: Path) -> None:
    """A check error stops the command; --skip-checks starts anyway."""
    env = project_env(tmp_path, BASIC_ASGI="basic.asgi_e004.application")
    result = manage(BASIC, "runchannelserver", "127.0.0.1:0", "--noreload", env=env, timeout=30)
    assert result.returncode == 1
    assert "(channelserver.E004)" in result.stdout
    with runchannelserver(tmp_path, "--skip-checks", BASIC_ASGI="basic.asgi_e004.application") as server:
        assert "Performing system checks" not in server.text
        assert httpx.get(server.url + "/", timeout=5).status_code == 200


# -- workers -----------------------------------------------------------------------------


def test_workers_in_noreload_mode(tmp_path: Path) -> None:
    with runchannelserver(tmp_path, "--workers", "2") as server:
        assert f"with 2 workers at http://127.0.0.1:{server.port}/" in server.text
        server.wait_for(re.compile(rb"All 2 worker\(s\) ready"), 20)
        for n in range(3):
            assert echo(server, str(n)) == f"v1:{n}"
        assert httpx.get(server.url + "/", timeout=5).text == "basic ok\n"
        code, _ = stop_with_ctrl_c(server)
    assert code == 0
    # The in-memory channel layer does not cross processes: the command says so.
    assert "(channelserver.W001)" in server.text
    assert len(set(re.findall(r"Worker pid (\d+) ready", server.text))) == 2


# -- one definition ------------------------------------------------------------------------


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", help_text))


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_every_option_from_one_definition(tmp_path: Path) -> None:
    """Each Config field is a flag of ``python -m channelserver`` and of
    ``runchannelserver`` (same name, same help) and a key of ``settings.CHANNELSERVER``."""
    env = project_env(tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "channelserver", "--help"],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    command = manage(BASIC, "runchannelserver", "--help", env=env).stdout
    cli_flags, command_flags = _flags(cli), _flags(command)
    for opt in options():
        names = {opt.flag} | ({"--no-" + opt.flag[2:]} if opt.is_bool else set())
        assert names <= cli_flags, opt.name
        if opt.name in ("host", "port"):
            assert not names & command_flags  # the addrport argument, as runserver
            continue
        assert names <= command_flags, opt.name
        assert _squeeze(opt.help) in _squeeze(cli), opt.name
        assert _squeeze(opt.help) in _squeeze(command), opt.name
    # Nothing server-related that the command has and Config does not define.
    django_own = {
        "--ipv6",
        "--noreload",
        "--nostatic",
        "--insecure",
        "--version",
        "--settings",
        "--pythonpath",
        "--no-color",
        "--force-color",
        "--skip-checks",
        "--help",
    }
    config_flags = {o.flag for o in options()} | {"--no-" + o.flag[2:] for o in options() if o.is_bool}
    assert command_flags - config_flags <= django_own

    # Every field name is a settings key: all of them at once are a clean configuration.
    every_key = json.dumps({opt.name: opt.default for opt in options()})
    result = manage(BASIC, "check", "--tag", "channelserver", env={**env, "BASIC_CHANNELSERVER": every_key})
    assert result.returncode == 0, result.stdout
    assert "System check identified no issues" in result.stdout


STOP_DURING_STARTUP = """
import asyncio, socket, sys, threading
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[], SECRET_KEY="x")
django.setup()
from channelserver.config import Config
from channelserver.management.commands.runchannelserver import Command

gate, starting, stopped_by_lifespan = threading.Event(), threading.Event(), []

async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    starting.set()
    await asyncio.get_running_loop().run_in_executor(None, gate.wait)  # a slow startup
    await send({"type": "lifespan.startup.complete"})
    await receive()
    stopped_by_lifespan.append(True)
    await send({"type": "lifespan.shutdown.complete"})

command = Command()
sock = socket.create_server(("127.0.0.1", 0))
serving = threading.Thread(target=command.serve, args=(Config(), app, sock, False))
serving.start()
starting.wait(10)
command.stop_server(0)  # a file changed while the app was starting: the reloader asks to stop
gate.set()
serving.join(10)
print("stopped" if not serving.is_alive() and stopped_by_lifespan else "still serving", flush=True)
sys.exit(0 if not serving.is_alive() else 1)
"""


def test_a_stop_asked_for_during_lifespan_startup_stops_the_server_once_it_listens() -> None:
    """The reloader may ask runchannelserver to stop before the server listens (a file
    changed during a slow lifespan startup): the stop is kept and honoured at once, with
    lifespan shutdown, instead of being lost."""
    done = subprocess.run([sys.executable, "-c", STOP_DURING_STARTUP], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "stopped", done.stdout + done.stderr
