"""The benchmark's plumbing: its presets and server choices, the profile split, and every
Channels workload driven once against channelserver serving ``bench/djproject`` (a few
operations each, so a broken app or load generator shows here, not in ``make bench``)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator

import pytest

from bench import load, run


def test_workload_presets_expand_in_order_without_repeats() -> None:
    args = run.parse_args(["--workloads", "channels,dj-view,http"])
    assert args.workloads == [*load.CHANNELS_WORKLOADS, "http"]
    assert run.parse_args([]).workloads == list(load.WORKLOADS)
    with pytest.raises(SystemExit):
        run.parse_args(["--workloads", "nope"])


def test_each_kind_of_workload_has_its_default_servers() -> None:
    args = argparse.Namespace(workloads=["http", "ch-echo"], servers=None, baseline=None)
    names, per_workload = run.select_pairs(args)
    assert per_workload["http"] == list(run.DEFAULT_SERVERS)
    assert per_workload["ch-echo"] == list(run.DEFAULT_CHANNELS_SERVERS)
    assert names == list(dict.fromkeys([*run.DEFAULT_SERVERS, *run.DEFAULT_CHANNELS_SERVERS]))
    # --servers: every listed server on every workload its spec allows (the floor: http, ws).
    args = argparse.Namespace(workloads=["http", "ch-echo"], servers=["floor", "granian"], baseline=None)
    assert run.select_pairs(args)[1] == {"http": ["floor", "granian"], "ch-echo": ["granian"]}


def test_every_workload_has_its_figures() -> None:
    for table in (run.UNITS, run.CONNECTIONS, run.MAX_OPS):
        assert set(table) == set(load.WORKLOADS)
    assert set(run.TITLES) == set(load.CHANNELS_WORKLOADS)
    assert {run.app_for(w) for w in load.RAW_WORKLOADS} == {run.APP}
    assert {run.app_for(w) for w in load.CHANNELS_WORKLOADS} == {run.CHANNELS_APP}


@pytest.mark.parametrize(
    ("filename", "func", "part"),
    [
        ("/v/site-packages/channelserver/server/connection.py", "_run", run.SPLIT_SERVER),
        ("/v/site-packages/wsproto/frame_protocol.py", "f", run.SPLIT_PARSERS),
        ("/v/site-packages/channels/consumer.py", "f", run.SPLIT_FRAMEWORK),
        ("/v/site-packages/django/core/handlers/base.py", "f", run.SPLIT_FRAMEWORK),
        ("/repo/bench/djproject/consumers.py", "receive", run.SPLIT_FRAMEWORK),
        ("/usr/lib/python3.11/asyncio/events.py", "_run", run.SPLIT_LOOP),
        ("/usr/lib/python3.11/inspect.py", "f", run.SPLIT_OTHER),
        ("~", "<method 'write' of 'uvloop.loop.UVStream' objects>", run.SPLIT_LOOP),
        ("~", "<built-in method builtins.isinstance>", None),
    ],
)
def test_profile_split_parts(filename: str, func: str, part: str | None) -> None:
    assert run.split_part(filename, func) == part


def test_profile_split_charges_a_builtin_to_its_callers() -> None:
    server = ("/x/channelserver/server/app.py", 1, "send")
    django = ("/x/django/http/response.py", 1, "init")
    builtin = ("~", 0, "<built-in method builtins.len>")
    entries = {
        server: (1, 1, 1.0, 1.0, {}),
        django: (1, 1, 1.0, 1.0, {}),
        builtin: (4, 4, 2.0, 2.0, {server: (1, 1, 0.5, 0.5), django: (3, 3, 1.5, 1.5)}),
    }
    text = "\n".join(run.split_lines(entries, ops=1, plain=4.0))
    assert "server: channelserver/*" in text
    rows = {line.split("  ")[0]: line.split() for line in text.splitlines()}
    assert rows[run.SPLIT_SERVER][-3:] == ["1500000.00", "37.5%", "1.5"]
    assert rows[run.SPLIT_FRAMEWORK][-3:] == ["2500000.00", "62.5%", "2.5"]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str | None]:
    if shutil.which("redis-server") is None:
        yield None
        return
    with run.redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def channels_server(redis_url: str | None) -> Iterator[run.Server]:
    env = {"BENCH_REDIS_URL": redis_url} if redis_url else None
    server = run.Server(run.SERVERS["channelserver"], app=run.CHANNELS_APP, env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("workload", load.CHANNELS_WORKLOADS)
def test_channels_workload_runs_once(workload: str, channels_server: run.Server, redis_url: str | None) -> None:
    if workload in run.NEEDS_REDIS and redis_url is None:
        pytest.skip("redis-server is not installed")
    connections = 5 if workload.startswith("ch-fanout") else 2
    argv = ["--port", str(channels_server.port), "--pid", str(channels_server.pid), "--workload", workload]
    argv += ["--connections", str(connections), "--warmup", "10", "--seconds", "0.05", "--max-ops", "20"]
    lines: list[str] = []
    assert load.main(argv, out=lines.append) == 0, channels_server.output()[-2000:]
    result = json.loads(lines[0])
    assert result["ops"] > 0
    if workload.startswith("ch-fanout"):
        assert result["ops"] % connections == 0  # whole rounds: every subscriber got every trigger
    else:
        assert result["ops"] <= 20 + connections  # --max-ops started, plus those in flight
