"""Django's async ORM in an async view and a sync view, on one keep-alive connection.

``apps/ecoproj/views.py`` on SQLite in the test's tmp dir (migrated first with
``django-admin migrate``): the async view awaits ``acreate``/``acount`` and iterates a
queryset with ``async for`` in one Task; the sync view runs in Django's thread-sensitive
executor, off the event loop, and sees every row the async view wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.wire import RawConnection
from tests.servers import ROOT

from .conftest import ECOPROJ, ECOPROJ_SETTINGS, serving

pytestmark = pytest.mark.ecosystem


@pytest.fixture
def db_env(tmp_path: Path) -> dict[str, str]:
    env = {"DJANGO_SETTINGS_MODULE": ECOPROJ_SETTINGS, "ECOSYSTEM_DB": str(tmp_path / "ecosystem.sqlite3")}
    migrated = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return env


def test_async_orm_view_and_sync_view_on_one_connection(db_env: dict[str, str]) -> None:
    with serving(ECOPROJ, env=db_env) as server, RawConnection(server.port) as conn:
        answers = []
        for method, target in (
            ("POST", "/notes/async/?text=first"),
            ("GET", "/notes/sync/"),
            ("POST", "/notes/async/?text=second"),
            ("GET", "/notes/sync/"),
        ):
            conn.request(method, target)
            response = conn.read_response()
            assert response.status == 200, (target, response)
            assert response.header(b"connection") != b"close"
            answers.append(response.json())
    created_1, sync_1, created_2, sync_2 = answers
    print(
        f"async view tasks {created_1['tasks']} and {created_2['tasks']}; sync view threads {sync_1['thread']}, {sync_2['thread']}"
    )

    assert (created_1["count"], created_1["texts"]) == (1, ["first"])
    assert (created_2["count"], created_2["texts"]) == (2, ["first", "second"])
    assert (sync_1["count"], sync_1["texts"]) == (1, ["first"])
    assert (sync_2["count"], sync_2["texts"]) == (2, ["first", "second"])
    for created in (created_1, created_2):
        first, last = created["tasks"]
        assert first is not None and first == last, created
        assert created["view_thread"] == "MainThread"  # the event loop's
        one, two = created["thread_sensitive"]
        assert one == two != "MainThread", created
    for synced in (sync_1, sync_2):
        assert synced["thread"] != "MainThread" and synced["event_loop_in_thread"] is False, synced
