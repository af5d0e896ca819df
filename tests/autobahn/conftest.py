"""Collects what the Autobahn test measured and prints the table at the end of the run.

The ``autobahn_results`` fixture hands the test a list kept on the pytest config; the
terminal summary shows each server's count per behaviour whether the test passed or not,
so the conformance figures are in every CI log.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.autobahn.run import Result, format_failures, format_table

RESULTS_KEY = pytest.StashKey[list[Result]]()


@pytest.fixture
def autobahn_results(request: pytest.FixtureRequest) -> list[Result]:
    """Where a test puts each :class:`Result`, for the terminal summary."""
    return request.config.stash.setdefault(RESULTS_KEY, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, [])
    if not results:
        return
    terminalreporter.section("Autobahn|Testsuite fuzzing client")
    terminalreporter.write_line(format_table(results))
    for result in results:
        if result.failures:
            terminalreporter.write_line(format_failures(result))
