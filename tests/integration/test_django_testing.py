"""``channelserver.testing``: a project's own live-server tests, run by Django's test
runner, on channelserver.

``tests/django_projects/basic/basic/livetests.py`` holds a ``ChannelServerLiveServerTestCase``
(HTTP, a WebSocket consumer, the test database, static files) and tests of
``ChannelServerProcess``' ``DaphneProcess`` contract. They run here in a subprocess, as
``manage.py test`` runs them in a project: once in this environment (Channels' own
``ChannelsLiveServerTestCase`` underneath) and once in a virtualenv without Daphne.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.django_projects.harness import (
    BASIC,
    PROJECT_DISTRIBUTIONS,
    fresh_venv,
    manage,
    project_env,
)

LIVE_TESTS = 7


def _assert_all_passed(output: str) -> None:
    assert re.search(rf"^Ran {LIVE_TESTS} tests? in ", output, re.M), output
    assert re.search(r"^OK$", output, re.M), output
    for name in ("test_websocket_consumer", "test_http_is_served_by_channelserver", "test_ready_port_kwargs_terminate"):
        assert re.search(rf"^{name} .* \.\.\. ok$", output, re.M), output


def test_live_server_test_case_on_channelserver(tmp_path: Path) -> None:
    result = manage(BASIC, "test", "basic.livetests", "-v", "2", env=project_env(tmp_path), timeout=60)
    assert result.returncode == 0, result.stdout
    _assert_all_passed(result.stdout)


def test_live_server_test_case_without_daphne(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path, (*PROJECT_DISTRIBUTIONS, "websockets"))
    env = project_env(tmp_path)
    probe = manage(BASIC, "shell", "-c", "import daphne", env=env, python=str(python))
    assert "No module named 'daphne'" in probe.stdout
    result = manage(BASIC, "test", "basic.livetests", "-v", "2", env=env, python=str(python), timeout=60)
    assert result.returncode == 0, result.stdout
    _assert_all_passed(result.stdout)
