"""bench/h2.py reads h2load's report: requests per second, succeeded and failed."""

from __future__ import annotations

from bench.h2 import parse_h2load

REPORT = """starting benchmark...
spawning thread #0: 4 total client(s). 2000 total requests
Application protocol: h2c

finished in 268.78ms, 7441.00 req/s, 511.86KB/s
requests: 2000 total, 2000 started, 2000 done, 1990 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 1990 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_the_report_is_read() -> None:
    assert parse_h2load(REPORT) == (7441.0, 1990, 10)


def test_a_report_without_the_figures_is_none() -> None:
    assert parse_h2load("no connection could be made\n") is None
