"""``manage.py check``: each channelserver check fires in a project built to trigger it,
with its id, its message naming the culprit, and its hint; the demo project is clean.

``tests/django_projects/checks/checksproj`` is a correct project (``settings.py``) plus one
``settings_*`` module per misconfiguration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.django_projects.harness import CHECKS, ROOT, manage, project_env

CLEAN = "System check identified no issues (0 silenced)."

CASES = [
    # (settings module, check id, exit code, texts the output must contain)
    ("e001_missing", "E001", 1, ["settings.ASGI_APPLICATION is not set"]),
    (
        "e001_broken",
        "E001",
        1,
        [
            "settings.ASGI_APPLICATION = 'checksproj.asgi_broken.application' could not be imported: "
            "ModuleNotFoundError: No module named 'checksproj.no_such_module'",
            "asgi_broken.py:4)",
        ],
    ),
    ("e001_attribute", "E001", 1, ["module 'checksproj.asgi' has no attribute 'aplication'"]),
    ("e002", "E002", 1, ["unknown key 'worker' in settings.CHANNELSERVER; did you mean 'workers'?"]),
    ("e003_value", "E003", 1, ["settings.CHANNELSERVER: ws_max_size='16MB' is not an integer"]),
    ("e003_range", "E003", 1, ["settings.CHANNELSERVER: workers=0 must be at least 1"]),
    ("e003_type", "E003", 1, ["settings.CHANNELSERVER must be a dict, not list"]),
    ("e004_class", "E004", 1, ["routes to the class checksproj.consumers.EchoConsumer", "EchoConsumer.as_asgi()"]),
    ("e004_wsgi", "E004", 1, ["contains a WSGI application", "get_asgi_application()"]),
    (
        "w001",
        "W001",
        0,
        [
            "CHANNEL_LAYERS['default'] is channels.layers.InMemoryChannelLayer but "
            "settings.CHANNELSERVER['workers'] asks for 4 worker processes",
            "channels_redis.core.RedisChannelLayer",
        ],
    ),
    ("w002", "W002", 0, ["do not pass an OriginValidator", "AllowedHostsOriginValidator(URLRouter(...))"]),
    ("w003", "W003", 0, ["has no 'http' entry", "get_asgi_application()"]),
]


@pytest.mark.parametrize(("module", "check_id", "code", "texts"), CASES, ids=[c[0] for c in CASES])
def test_each_check_fires_with_its_id_and_hint(
    tmp_path: Path, module: str, check_id: str, code: int, texts: list[str]
) -> None:
    result = manage(CHECKS, "check", "--settings", f"checksproj.settings_{module}", env=project_env(tmp_path))
    output = result.stdout
    assert result.returncode == code, output
    assert f"(channelserver.{check_id})" in output
    assert "HINT:" in output
    for text in texts:
        assert text in output
    # Exactly the one problem the project was built to have.
    assert "System check identified 1 issue (0 silenced)." in output


def test_correct_project_is_clean(tmp_path: Path) -> None:
    result = manage(CHECKS, "check", env=project_env(tmp_path))
    assert result.returncode == 0, result.stdout
    assert CLEAN in result.stdout


def test_web_concurrency_counts_as_workers(tmp_path: Path) -> None:
    """W001 also when the worker count comes from $WEB_CONCURRENCY (no 'workers' key)."""
    env = project_env(tmp_path, WEB_CONCURRENCY="3")
    result = manage(CHECKS, "check", "--settings", "checksproj.settings_web_concurrency", env=env)
    assert result.returncode == 0, result.stdout
    assert "(channelserver.W001)" in result.stdout
    assert "$WEB_CONCURRENCY asks for 3 worker processes" in result.stdout


def test_silenced_like_any_django_check(tmp_path: Path) -> None:
    env = project_env(tmp_path)
    result = manage(CHECKS, "check", "--settings", "checksproj.settings_w002_silenced", env=env)
    assert result.returncode == 0, result.stdout
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_demo_project_is_clean(tmp_path: Path) -> None:
    result = manage(ROOT, "check", env=project_env(tmp_path))
    assert result.returncode == 0, result.stdout
    assert CLEAN in result.stdout
