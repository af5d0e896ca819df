"""Fixtures for the demo tests: a migrated SQLite database, real servers, a real Redis.

Every server here is a real subprocess on 127.0.0.1 with port 0 (``tests/servers.py``),
serving ``demo_project.asgi:application`` against a database migrated for the test run
(``DEMO_DB``; the settings read it). The ``demo_server`` fixture is parametrised over
channelserver and Daphne, so each scenario that uses it runs against both (parity); what is
meant to differ is listed in :mod:`tests.demo.differences`.

Tools the tests need from the system (redis-server, chromium) are looked up with
:func:`require_executable`: missing under ``CI=true`` is a failure, elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.servers import ROOT, ServerProcess, channelserver, daphne

APP = "demo_project.asgi:application"
SERVER_KINDS = ("channelserver", "daphne")
T = TypeVar("T")


def require_executable(name: str, path: str | None = None) -> str:
    """The path of a system tool the test needs; fail under CI=true when it is missing."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (scripts/system-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true this is a failure, not a skip")
    pytest.skip(message)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one async scenario to the end, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def migrate(db: Path) -> None:
    """Create and migrate a fresh demo database at ``db``."""
    env = dict(os.environ, DEMO_DB=str(db), DJANGO_SETTINGS_MODULE="demo_project.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database per test run; each server gets a copy (:func:`fresh_db`)."""
    db = tmp_path_factory.mktemp("demo-template") / "demo.sqlite3"
    migrate(db)
    return db


def fresh_db(template: Path, directory: Path) -> Path:
    db = directory / "demo.sqlite3"
    shutil.copyfile(template, db)
    return db


def start_demo(kind: str, db: Path, *flags: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start the demo project under ``kind`` ("channelserver" or "daphne")."""
    full_env = {"DEMO_DB": str(db), "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    full_env.update(env or {})
    if kind == "channelserver":
        return channelserver(APP, *flags, env=full_env)
    if kind == "daphne":
        return daphne(APP, *flags, env=full_env)
    raise ValueError(kind)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def demo_server(
    request: pytest.FixtureRequest, template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The demo project served by channelserver, then by Daphne (one process per module)."""
    db = fresh_db(template_db, tmp_path_factory.mktemp(f"demo-{request.param}"))
    server = start_demo(request.param, db)
    server.kind = request.param  # type: ignore[attr-defined]
    with server:
        yield server


@pytest.fixture(scope="module")
def channelserver_demo(template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo project served by channelserver only."""
    db = fresh_db(template_db, tmp_path_factory.mktemp("demo-channelserver"))
    with start_demo("channelserver", db) as server:
        server.kind = "channelserver"  # type: ignore[attr-defined]
        yield server


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A real redis-server in ``directory``, without persistence; yields its URL."""
    binary = require_executable("redis-server")
    with socket.socket() as sock:  # redis-server cannot report a port it picked itself
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    persistence = ["--save", "", "--appendonly", "no", "--dir", str(directory)]
    with ServerProcess(
        [binary, "--port", str(port), "--bind", "127.0.0.1", *persistence], wait_for_port=False
    ) as server:
        server.wait_for(re.compile(rb"Ready to accept connections"), timeout=15)
        yield f"redis://127.0.0.1:{port}/0"
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of this test's own, in tmp_path."""
    with redis_server(tmp_path) as url:
        yield url
