"""Fixtures of the ecosystem suite: real servers, a real Redis, and the log check.

Every scenario runs against a real ``python -m channelserver`` subprocess
(``tests/servers.py``) serving an app from :mod:`tests.ecosystem.apps`. :func:`serving`
stops the server when the scenario is done and asserts that its log holds no traceback,
no ``Exception in ...`` line and nothing at ERROR level: a library that breaks inside the
server usually shows up there first, even when the client saw an answer.

The raw-ASGI and Starlette scenarios run on both event loops (the ``loop`` fixture:
``--loop asyncio`` and ``--loop uvloop``); the Django ones on the default ``auto``, as
``make run`` serves them.

Redis is one redis-server per test session (tmp dir, no persistence), found with the demo
tests' :func:`~tests.demo.conftest.require_executable`: missing under ``CI=true`` is a
failure, elsewhere a skip. Tests that share it keep apart by group and room names of
their own.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.demo.conftest import redis_server
from tests.servers import ServerProcess, channelserver

#: Lines that must not appear in a server's log for any scenario of this suite.
BAD_LINE = re.compile(
    r"Traceback|Exception in|\b(ERROR|CRITICAL)\b|Task exception was never retrieved|Task was destroyed"
)
#: The Django project of the suite (Channels, Strawberry, the async ORM).
ECOPROJ = "tests.ecosystem.apps.ecoproj.asgi:application"
ECOPROJ_SETTINGS = "tests.ecosystem.apps.ecoproj.settings"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ecosystem: a library users run inside channelserver, against a real server subprocess"
    )


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """The server's ``--loop``: asyncio's own, then uvloop (what ``auto`` picks when installed)."""
    if request.param == "uvloop" and importlib.util.find_spec("uvloop") is None:
        message = "uvloop is not installed (the uvloop extra installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true this is a failure, not a skip")
        pytest.skip(message)
    return str(request.param)


def bad_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if BAD_LINE.search(line)]


@contextmanager
def serving(app: str, *flags: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A channelserver subprocess serving ``app`` for one scenario; on the way out it is
    stopped with SIGTERM and must exit 0 with a clean log."""
    with channelserver(app, *flags, env=env) as server:
        try:
            yield server
        except BaseException:
            server.stop()
            print(f"--- log of {app} on port {server.port} ---\n{server.text}")
            raise
        rc = server.stop()
    assert rc == 0, server.text
    assert bad_lines(server.text) == [], server.text


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session, in a tmp dir, without persistence."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
