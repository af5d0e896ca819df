"""Helpers for the Django integration tests: the test projects, their environment, a
``manage.py`` runner, and fresh virtualenvs holding only the packages a project needs.

Projects here:

- ``basic/``: settings with environment knobs, an echo consumer, a model, a static file
  and live-server tests (``basic/livetests.py``);
- ``checks/``: ``checksproj``, one ``settings_*`` module per system check it triggers.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

PROJECTS = Path(__file__).resolve().parent
ROOT = PROJECTS.parent.parent
BASIC = PROJECTS / "basic"
CHECKS = PROJECTS / "checks"

#: What a Django + Channels project served by channelserver installs: channelserver's own
#: dependencies (h11, wsproto, asgiref) and the project's (Django, Channels). No Daphne.
PROJECT_DISTRIBUTIONS = ("django", "asgiref", "sqlparse", "channels", "h11", "wsproto", "h2", "hpack", "hyperframe")


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a test project's processes: databases in tmp_path, one worker
    unless a test asks for more, no settings or Redis of the calling shell."""
    env = {
        "BASIC_DB": str(tmp_path / "basic.sqlite3"),
        "BASIC_TEST_DB": str(tmp_path / "basic-test.sqlite3"),
        "CHECKS_DB": str(tmp_path / "checks.sqlite3"),
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "WEB_CONCURRENCY": "1",
        "REDIS_URL": "",
        "DJANGO_COLORS": "",
    }
    env.update(extra)
    return env


def subprocess_env(env: dict[str, str], *path: Path | str) -> dict[str, str]:
    """os.environ plus ``env``, with ``path`` and the repository root on PYTHONPATH, for
    processes started without tests/servers.py."""
    full = dict(os.environ)
    full.pop("DJANGO_SETTINGS_MODULE", None)
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in path), str(ROOT)])
    return full


def manage(
    project: Path,
    *args: str,
    env: dict[str, str],
    python: str = sys.executable,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py *args`` of ``project`` to completion; stdout and stderr merged."""
    return subprocess.run(
        [python, "manage.py", *args],
        cwd=project,
        env=subprocess_env(env, project),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def copy_project(source: Path, tmp_path: Path) -> Path:
    """A copy of a test project in tmp_path, for tests that edit its files."""
    target = tmp_path / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    return target


def fresh_venv(tmp_path: Path, distributions: Iterable[str] = PROJECT_DISTRIBUTIONS) -> Path:
    """A new virtualenv holding only ``distributions`` (linked from this interpreter's
    environment, so nothing is downloaded) plus channelserver from this repository.

    Returns the venv's python. What is not listed (Daphne, Twisted, uvloop, ...) cannot
    be imported there, so a test run in it shows what the project really needs.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    site = Path(purelib)
    here = Path(sysconfig.get_paths()["purelib"])
    for name in distributions:
        dist = importlib.metadata.distribution(name)
        tops: set[str] = set()
        for file in dist.files or ():
            first = file.parts[0]
            if first in ("..", "__pycache__") or first.endswith(".pth"):
                continue
            tops.add(first)
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists() and source.parent == here:
                (site / top).symlink_to(source)
    (site / "channelserver-repo.pth").write_text(str(ROOT) + "\n")
    return python
