"""The deployment suite: several instances behind a real nginx, sharing a real Redis.

System tools (nginx, redis-server) are found with the demo tests'
:func:`~tests.demo.conftest.require_executable`: missing under ``CI=true`` is a failure,
elsewhere a skip. ``scripts/system-deps.sh`` installs both.

The figures a scenario measures (handshake rates, reconnection times, HTTP answers during a
rolling deploy) are printed in pytest's terminal summary, so ``make test`` shows them
without ``-s``, and written to ``deploy-figures.json`` in the session's base temp
directory; docs/deployment.md quotes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Figures recorded by the scenarios of this session, in the order they ran.
FIGURES: list[dict[str, Any]] = []
FIGURES_FILE = "deploy-figures.json"


def record(figures: dict[str, Any], base: Path) -> Path:
    """Keep ``figures`` for the terminal summary and (re)write the session's JSON file."""
    FIGURES.append(figures)
    path = base / FIGURES_FILE
    path.write_text(json.dumps(FIGURES, indent=2) + "\n")
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("deployment figures (tests/deploy)")
    for figures in FIGURES:
        terminalreporter.write_line(json.dumps(figures, indent=2))
