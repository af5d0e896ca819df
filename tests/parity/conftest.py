"""One suite, two servers: the ``server`` fixture runs every parity test on channelserver
and on Daphne, with the same scenario and the same assertion.

A test observes something and calls ``parity.check(scenario, observed, correct)``. The
expectation is ``correct``, except on Daphne for the scenarios listed in
``differences.py``, where it is the listed Daphne observation. Every check is recorded;
the terminal summary prints the table, so parity results are in every test log.

Under ``CI=true`` a missing Daphne is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.parity.differences import DIFFERENCES
from tests.servers import ServerProcess, channelserver, daphne

SERVERS = ["channelserver", "daphne"]

#: The apps every server serves, with the same meaning on both: the raw ASGI app mounted
#: under /mnt, and the Channels project. An app instance whose client left has one second
#: to return on both.
APPS = {
    "core": ("core_app:app", {"channelserver": ["--root-path", "/mnt"], "daphne": ["--root-path", "/mnt"]}),
    "channels": ("chanapp.asgi:application", {"channelserver": [], "daphne": []}),
}
CLOSE_TIMEOUT = {"channelserver": ["--app-close-timeout", "1"], "daphne": ["--application-close-timeout", "1"]}


@dataclass
class Target:
    """One server implementation; its app servers start on first use, once per session."""

    name: str
    procs: dict[str, ServerProcess] = field(default_factory=dict)

    def _get(self, app: str) -> ServerProcess:
        proc = self.procs.get(app)
        if proc is None:
            spec, flags = APPS[app]
            start = channelserver if self.name == "channelserver" else daphne
            proc = self.procs[app] = start(spec, *flags[self.name], *CLOSE_TIMEOUT[self.name])
        return proc

    @property
    def core(self) -> ServerProcess:
        return self._get("core")

    @property
    def channels(self) -> ServerProcess:
        return self._get("channels")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.__exit__(None, None, None)


@dataclass
class Check:
    scenario: str
    server: str
    outcome: str  # "ok" (the correct observation), "differs as listed", "FAILED"
    observed: Any
    expected: Any


RESULTS: list[Check] = []


class Parity:
    """The one assertion of the parity suite."""

    def __init__(self, server: str) -> None:
        self.server = server

    def check(self, scenario: str, observed: Any, correct: Any) -> None:
        listed = DIFFERENCES.get(scenario)
        if listed is not None and listed.daphne == correct:
            pytest.fail(f"differences.py lists {scenario!r}, but its Daphne observation is the correct one")
        if self.server == "daphne" and listed is not None:
            expected, outcome = listed.daphne, "differs as listed"
        else:
            expected, outcome = correct, "ok"
        ok = observed == expected
        RESULTS.append(Check(scenario, self.server, outcome if ok else "FAILED", observed, expected))
        assert ok, f"{scenario} on {self.server}: observed {observed!r}, expected {expected!r}" + (
            f" (listed difference: {listed.why})" if listed and self.server == "daphne" else ""
        )


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "daphne" and importlib.util.find_spec("daphne") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("daphne is not installed; the parity suite needs it (pip install daphne)")
        pytest.skip("daphne is not installed")
    target = Target(request.param)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def parity(server: Target) -> Parity:
    return Parity(server.name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    by_scenario: dict[str, dict[str, Check]] = {}
    for check in RESULTS:
        by_scenario.setdefault(check.scenario, {})[check.server] = check
    terminalreporter.section("parity: channelserver vs Daphne")
    width = max(len(s) for s in by_scenario) + 2
    terminalreporter.write_line(f"{'scenario':<{width}}{'channelserver':<16}daphne")
    counts = {"ok": 0, "differs as listed": 0, "FAILED": 0}
    for scenario in sorted(by_scenario):
        row = by_scenario[scenario]
        cells = []
        for name in SERVERS:
            check = row.get(name)
            cells.append("-" if check is None else check.outcome)
            if name == "daphne" and check is not None:
                counts[check.outcome] += 1
        why = DIFFERENCES[scenario].why if scenario in DIFFERENCES else ""
        line = f"{scenario:<{width}}{cells[0]:<16}{cells[1]}"
        terminalreporter.write_line(line + (f": {why}" if why and cells[1] == "differs as listed" else ""))
    unused = sorted(set(DIFFERENCES) - set(by_scenario))
    terminalreporter.write_line(
        f"Daphne: {counts['ok']} as channelserver, {counts['differs as listed']} listed differences, "
        f"{counts['FAILED']} unexpected" + (f"; listed but not run: {', '.join(unused)}" if unused else "")
    )
