"""A rolling deploy of two instances behind nginx, with a few hundred live GraphQL subscriptions.

The set-up, all real processes on 127.0.0.1 in the test's temp directory:

- one redis-server (no persistence);
- two instances, A and B, each ``python -m channelserver demo_project.asgi:application
  --workers 2`` on a port of its own, serving the demo with ``RedisPubSubChannelLayer``
  (:mod:`tests.deploy.settings`) on one SQLite database, with the health path, the
  liveness path, ``--drain-delay`` and ``--drain-spread``;
- nginx in front (:mod:`tests.deploy.nginx`, the configuration docs/deployment.md shows);
- :data:`CLIENTS` graphql-transport-ws subscribers through nginx, each reconnecting and
  subscribing again as the ``graphql-ws`` library does (:mod:`tests.deploy.subscribers`);
- plain HTTP GraphQL queries through nginx for the whole deploy: GETs one after another,
  and POSTs one after another beside them.

The deploy: A gets SIGTERM, drains and exits; it is started again on the same port and
waited for until its health path answers 200 and nginx sends it requests again; then the
same for B. What must hold:

- while A drains, its health path answers 503 within a second of the signal, its liveness
  path 200, and it still serves requests until ``drain_delay`` has passed; after that a new
  connection to it is refused at once (nginx then moves on to B at once, for any method),
  not left waiting in a listen backlog;
- its subscribers are closed with 1012, inside the window ``drain_delay`` to
  ``drain_delay + drain_spread + graceful_timeout`` after the signal (each socket is held
  by its running subscription for up to ``graceful_timeout`` after its moment in the
  spread); each is live again (subscribed, first result in) within graphql-ws's longest
  first retry wait plus :data:`SLACK`, so all are back by
  ``drain_delay + drain_spread + graceful_timeout + 4 s + SLACK``;
- no plain HTTP query gets a 5xx (nor anything but 200) from nginx;
- each instance exits 0; no server log holds an ERROR line or a traceback;
- after the deploy every subscriber is live and a mutation reaches every one of them.

Everything that does not hold is collected (:class:`Problems`), so one failure names all
of it, with the server's own drain log lines. The instances' and nginx's logs are written
next to the test's files (``A-0.log``, ``B-1.log``, ``nginx.log``, ``access.log``).

The figure: the peak rate of handshakes (accepted, per second, over a sliding 1 s window)
at the instance that stays up while the other drains, once with ``--drain-spread 0`` and
once with ``--drain-spread`` :data:`SPREAD`. The spread must bring it clearly down
(:func:`test_drain_spread_lowers_the_peak_handshake_rate`). Both deploys run once per
session (:func:`deploys`), whichever test asks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.demo.conftest import migrate, redis_server
from tests.servers import PYTHON, ServerProcess

from .conftest import record
from .nginx import nginx as run_nginx
from .nginx import read_access_log
from .subscribers import Subscriber

APP = "demo_project.asgi:application"
SETTINGS = "tests.deploy.settings"
#: Subscribers: a few hundred, kept moderate for a 2-core machine shared with other tests.
CLIENTS = 240
WORKERS = 2
HEALTH = "/healthz"
LIVENESS = "/livez"
#: Seconds the draining instance keeps serving with its health path at 503.
DRAIN_DELAY = 2.0
#: The paced run's --drain-spread.
SPREAD = 6.0
SPREADS = (0.0, SPREAD)
#: Bound on held work at a drain. channelserver.strawberry's consumer holds the drain while an
#: operation runs, subscriptions included (a finite one may finish): under drain_spread each
#: held socket is closed this long after its own moment in the window, so a fleet of endless
#: subscriptions still leaves as a slope, graceful_timeout later.
GRACEFUL_TIMEOUT = 2.0
#: graphql-ws's longest first retry wait: 1 s plus at most 3 s of jitter.
MAX_FIRST_RETRY = 4.0
#: Room for a loaded 2-core machine: handshake, connection_init, subscribe, first result.
SLACK = 3.0
#: The paced peak must be at most this fraction of the unpaced one. With graphql-ws's own
#: jitter alone (spread 0) 240 clients arrive over ~2.7 s; spread over 6 s more, the
#: expected peak is about 0.55 of it (a simulation of both gives under 0.75 in 2000 of 2000
#: runs).
PACED_PEAK_RATIO = 0.75
#: One deploy, from the first process started to the last stopped, at most (about 40 to 60 s).
DEPLOY_BOUND = 120
ROOM = "lobby"
SUBSCRIPTION = "subscription Live($room: String!) { messages(room: $room, recent: 1) { id text } }"
POST = (
    "mutation Post($room: String!, $text: String!) "
    '{ postMessage(room: $room, text: $text, author: "deploy") { id text } }'
)
#: Answered by whichever worker serves it, without the database.
QUERY = "{ stats { pid } }"
BAD_LINE = re.compile(
    r"Traceback|Exception in|\b(ERROR|CRITICAL)\b|Task exception was never retrieved|Task was destroyed"
)
READY = re.compile(rb"All \d+ worker\(s\) ready")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rate(times: list[float], window: float = 1.0) -> int:
    """The most events in any ``window`` seconds."""
    times = sorted(times)
    best = start = 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- the instances ---------------------------------------------------------------------------


@dataclass
class Instance:
    """One deployment unit: ``python -m channelserver --workers 2`` on a fixed port,
    started again on the same port by the deploy. Every generation's output is kept."""

    name: str
    port: int
    env: dict[str, str]
    spread: float
    generations: list[ServerProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def current(self) -> ServerProcess:
        return self.generations[-1]

    def start(self) -> None:
        """Start a generation and wait for its 'Listening on' line (blocking)."""
        command = [PYTHON, "-m", "channelserver", APP, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(WORKERS), "--health-path", HEALTH, "--liveness-path", LIVENESS]
        command += ["--drain-delay", str(DRAIN_DELAY), "--drain-spread", str(self.spread)]
        command += ["--graceful-timeout", str(GRACEFUL_TIMEOUT)]
        self.generations.append(ServerProcess(command, env=self.env, ready_timeout=60))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every worker ready, and the health path answering 200 (blocking), as a load
        balancer would wait before sending it traffic."""
        self.current.wait_for(READY, timeout)
        deadline = time.monotonic() + 15
        last = ""
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.get(self.url + HEALTH)
                except httpx.HTTPError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]!r}"
                time.sleep(0.1)
        raise AssertionError(f"instance {self.name}: {HEALTH} did not answer 200 within 15 s; last: {last}")

    def stop(self) -> None:
        for process in self.generations:
            if process.proc.poll() is None:
                process.stop(timeout=GRACEFUL_TIMEOUT + 30)
            process.close()

    def bad_lines(self) -> list[str]:
        return [
            f"{self.name}#{number} {line}"
            for number, process in enumerate(self.generations)
            for line in process.text.splitlines()
            if BAD_LINE.search(line)
        ]


# -- the HTTP load ---------------------------------------------------------------------------


@dataclass
class Answer:
    at: float
    method: str
    status: int | None
    seconds: float
    upstream: str
    error: str = ""


class HTTPLoad:
    """GraphQL queries through nginx until stopped: one GET after another, and one POST after
    another beside them, so that each method meets every moment of the deploy."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/graphql/"
        self.answers: list[Answer] = []
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
            await asyncio.gather(self._send(client, "GET"), self._send(client, "POST"))

    async def _send(self, client: httpx.AsyncClient, method: str) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                if method == "GET":
                    response = await client.get(
                        self.url, params={"query": QUERY}, headers={"accept": "application/json"}
                    )
                else:
                    response = await client.post(self.url, json={"query": QUERY})
            except httpx.HTTPError as exc:
                self.answers.append(Answer(started, method, None, loop.time() - started, "", repr(exc)))
                continue
            self.answers.append(
                Answer(
                    started,
                    method,
                    response.status_code,
                    loop.time() - started,
                    response.headers.get("x-upstream", ""),
                    "" if response.status_code == 200 else response.text[:200],
                )
            )
            # A short pause: a steady stream, without starving the subscribers' loop.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.02)

    def stop(self) -> None:
        self._stopping.set()


# -- the deploy ------------------------------------------------------------------------------


class Problems(list[str]):
    """What did not hold, collected so that one failure names all of it."""

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.append(message)


async def post(base_url: str, text: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=15.0, trust_env=False) as client:
        response = await client.post(
            f"{base_url}/graphql/", json={"query": POST, "variables": {"room": ROOM, "text": text}}
        )
    assert response.status_code == 200, (response.status_code, response.text)
    result = response.json()
    assert not result.get("errors"), result
    return result["data"]["postMessage"]  # type: ignore[no-any-return]


async def all_live(subscribers: list[Subscriber], timeout: float) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(s.live.wait() for s in subscribers)), timeout)
    except asyncio.TimeoutError:
        down = [s for s in subscribers if not s.live.is_set()]
        gave_up = [f"#{s.index}: {s.gave_up}" for s in down if s.gave_up]
        sample = [(s.index, s.closes[-1:], s.refused[-3:], s.errors[-1:]) for s in down[:5]]
        raise AssertionError(
            f"{len(down)} of {len(subscribers)} subscribers not live within {timeout:.1f}s; gave up: {gave_up}; "
            f"some of them: {sample}"
        ) from None


async def all_back(subscribers: list[Subscriber], since: float, timeout: float) -> list[float | None]:
    """Wait up to ``timeout`` for every one of ``subscribers`` to be closed after ``since``
    and live again; the time each went live again (None for those that did not)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.wait_back(since) for s in subscribers)), timeout)
    return [s.live_at[-1] if s.back_since(since) else None for s in subscribers]


async def reaches_everyone(base_url: str, subscribers: list[Subscriber], text: str, timeout: float = 15.0) -> None:
    """Post a message; every subscriber must receive it (checked by id)."""
    for subscriber in subscribers:
        subscriber.received.clear()
    message = await post(base_url, text)

    async def arrived(subscriber: Subscriber) -> None:
        while not any(r and r["messages"]["id"] == message["id"] for r in subscriber.results):
            await subscriber.received.wait()
            subscriber.received.clear()

    try:
        await asyncio.wait_for(asyncio.gather(*(arrived(s) for s in subscribers)), timeout)
    except asyncio.TimeoutError:
        missing = [
            s.index for s in subscribers if not any(r and r["messages"]["id"] == message["id"] for r in s.results)
        ]
        raise AssertionError(f"message {message} did not reach {len(missing)} subscriber(s): {missing[:20]}") from None


@dataclass
class Probe:
    """What the draining instance answered directly, by time since its SIGTERM."""

    health: list[tuple[float, str]] = field(default_factory=list)
    liveness: list[tuple[float, str]] = field(default_factory=list)
    app: list[tuple[float, str]] = field(default_factory=list)

    def first(self, answers: list[tuple[float, str]], status: str) -> float | None:
        return next((at for at, got in answers if got == status), None)


async def probe_draining(instance: Instance, since: float, exited: asyncio.Event) -> Probe:
    """Ask the instance itself (not nginx), every 100 ms until it exits: its health path,
    its liveness path, and the app (a query), each answer with its time since the signal."""
    loop = asyncio.get_running_loop()
    probe = Probe()
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:

        async def ask(path: str, params: dict[str, str] | None = None) -> str:
            headers = {"connection": "close", "accept": "application/json"}
            try:
                response = await client.get(instance.url + path, params=params, headers=headers)
            except httpx.ConnectError:
                return "refused"
            except httpx.TimeoutException:
                return "timeout"
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return str(response.status_code)

        while not exited.is_set():
            at = loop.time() - since
            health, liveness, app = await asyncio.gather(ask(HEALTH), ask(LIVENESS), ask("/graphql/", {"query": QUERY}))
            probe.health.append((at, health))
            probe.liveness.append((at, liveness))
            probe.app.append((at, app))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(exited.wait(), 0.1)
    return probe


async def back_in_rotation(directory: Path, instance: Instance, since: float, timeout: float = 20.0) -> None:
    """Wait until nginx answers a request from ``instance`` again (after ``since``, wall
    clock): its passive check has let the restarted instance back in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in read_access_log(directory):
            if line.at >= since and line.status == 200 and line.upstreams[-1:] == (instance.address,):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"nginx sent no request to the restarted instance {instance.name} within {timeout:g}s")


async def drain_and_restart(
    leaving: Instance, staying: Instance, subscribers: list[Subscriber], spread: float, problems: Problems
) -> dict[str, Any]:
    """SIGTERM ``leaving``, watch its drain and its subscribers move, start it again on the
    same port, wait until it is ready. Returns the phase's figures; what did not hold goes
    to ``problems``."""
    loop = asyncio.get_running_loop()
    moving = [s for s in subscribers if s.live.is_set() and s.upstream == leaving.address]
    assert moving, f"no subscriber on instance {leaving.name} before its drain"
    process = leaving.current
    signalled = loop.time()
    process.signal(signal.SIGTERM)
    exited = asyncio.Event()
    probing = asyncio.create_task(probe_draining(leaving, signalled, exited))
    back_by = signalled + DRAIN_DELAY + spread + GRACEFUL_TIMEOUT + MAX_FIRST_RETRY + SLACK
    # Wait past back_by (up to the drain's own bound) so that a late drain shows its timing.
    patience = DRAIN_DELAY + spread + GRACEFUL_TIMEOUT + MAX_FIRST_RETRY + SLACK

    async def exit_code() -> tuple[int, float]:
        try:
            return await asyncio.to_thread(process.wait, GRACEFUL_TIMEOUT + 30), loop.time()
        finally:
            exited.set()

    (code, exited_at), probe, back_at = await asyncio.gather(
        exit_code(), probing, all_back(moving, signalled, patience)
    )
    await asyncio.to_thread(leaving.start)
    await asyncio.to_thread(leaving.wait_ready)
    ready_at = loop.time()

    closes = [c for s in moving for c in s.closes if c.at >= signalled and c.upstream == leaving.address]
    close_codes = sorted({c.code or 0 for c in closes})
    accepted = [
        h.at
        for s in subscribers
        for h in s.handshakes
        if signalled <= h.at <= ready_at and h.upstream == staying.address
    ]
    gaps = [g for s in moving for g in s.gaps[-1:]]
    back = [at for at in back_at if at is not None]
    figures = {
        "drained": leaving.name,
        "clients_moved": len(moving),
        "peak_handshakes_per_s_at_staying": peak_rate(accepted),
        "handshakes_at_staying": len(accepted),
        "first_close_s": round(min(c.at for c in closes) - signalled, 2) if closes else None,
        "last_close_s": round(max(c.at for c in closes) - signalled, 2) if closes else None,
        "close_codes": close_codes,
        "everyone_back_s": round(max(back) - signalled, 2) if back else None,
        "not_back": len(back_at) - len(back),
        "reconnect_gap_max_s": round(max(gaps), 2) if gaps else None,
        "reconnect_gap_median_s": round(statistics.median(gaps), 2) if gaps else None,
        "exit_s": round(exited_at - signalled, 2),
        "exit_code": code,
        "restart_ready_s": round(ready_at - exited_at, 2),
        "health_first_503_s": probe.first(probe.health, "503"),
        "health_answers": summarise(probe.health),
        "liveness_answers": summarise(probe.liveness),
        "app_answers": summarise(probe.app),
    }
    print(f"\nphase figures, drain_spread={spread:g}: {figures}")

    # The health path tells the load balancer at once; the app is still served meanwhile.
    name = f"instance {leaving.name} (drain_spread={spread:g})"
    first_503 = probe.first(probe.health, "503")
    problems.check(
        first_503 is not None and first_503 <= 1.0,
        f"{name}: {HEALTH} did not answer 503 within 1 s of SIGTERM: {summarise(probe.health)}",
    )
    problems.check(
        any(got == "200" for at, got in probe.liveness if at < DRAIN_DELAY),
        f"{name}: {LIVENESS} did not answer 200 while draining: {summarise(probe.liveness)}",
    )
    served = [got for at, got in probe.app if (first_503 or 0) <= at < DRAIN_DELAY - 0.2]
    problems.check(
        bool(served) and all(got == "200" for got in served),
        f"{name}: the app was not served during drain_delay ({DRAIN_DELAY:g}s): {summarise(probe.app)}",
    )
    # Once drain_delay is over, the instance stops accepting: a new connection is refused at
    # once (nginx then tries the other instance at once, for any method), not left in a listen
    # backlog that no process accepts from (nginx would wait, then get a reset: 502 for a POST).
    after = [got for at, got in probe.health if at >= DRAIN_DELAY + 0.5]
    problems.check(
        all(got == "refused" for got in after),
        f"{name}: a new connection after drain_delay ({DRAIN_DELAY:g}s) was not refused at once, it waited: "
        f"{HEALTH} answered {summarise(probe.health)}",
    )
    # The subscribers: closed with 1012, inside the drain window, all back in time.
    drain_lines = [
        line.split("] ")[-1] for line in process.text.splitlines() if "Drain:" in line or "graceful_timeout" in line
    ]
    window = (signalled + DRAIN_DELAY - 0.5, signalled + DRAIN_DELAY + spread + GRACEFUL_TIMEOUT + 1.5)
    outside = sorted(round(c.at - signalled, 1) for c in closes if not window[0] <= c.at <= window[1])
    never = len(moving) - len({s.index for s in moving if any(c.at >= signalled for c in s.closes)})
    problems.check(
        not outside and not never,
        f"{name}: of its {len(moving)} subscribers, {len(outside)} were closed outside the window "
        f"drain_delay..drain_delay+drain_spread+graceful_timeout "
        f"({DRAIN_DELAY:g}..{DRAIN_DELAY + spread + GRACEFUL_TIMEOUT:g}s after SIGTERM), "
        f"at {sorted(set(outside))[:12]}s, and {never} not at all; the server logged: {drain_lines}",
    )
    problems.check(close_codes == [1012], f"{name}: close codes {close_codes}, expected only 1012")
    late = sorted(round(at - signalled, 1) for at in back if at > back_by)
    problems.check(
        not late and len(back) == len(moving),
        f"{name}: {len(moving) - len(back)} subscriber(s) not live again, {len(late)} live again only after "
        f"drain_delay + drain_spread + graceful_timeout + {MAX_FIRST_RETRY + SLACK:g}s "
        f"({back_by - signalled:.1f}s after SIGTERM): "
        f"at {sorted(set(late))[:10]}s",
    )
    problems.check(
        not gaps or max(gaps) <= MAX_FIRST_RETRY + SLACK,
        f"{name}: a subscriber took {max(gaps or [0]):.1f}s from its close to being live again",
    )
    problems.check(code == 0, f"{name} exited with {code}:\n{process.text[-3000:]}")
    return figures


def nginx_errors(text: str) -> dict[str, int]:
    """nginx's [error] and [warn] lines, counted by what they say (addresses left out)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = re.search(r"\[(error|warn)\] \d+#\d+: \*\d+ (.*?)(, client:|$)", line)
        if match:
            counts[match[2]] = counts.get(match[2], 0) + 1
    return counts


def summarise(answers: list[tuple[float, str]]) -> list[str]:
    """Runs of equal answers: ``"200 from 0.0s"``, ``"503 from 0.1s"``, ..."""
    runs: list[str] = []
    previous = None
    for at, got in answers:
        if got != previous:
            runs.append(f"{got} from {at:.1f}s")
            previous = got
    return runs


@dataclass
class Deploy:
    """One rolling deploy's figures, and what did not hold."""

    figures: dict[str, Any]
    problems: Problems


async def rolling_deploy(spread: float, base: Path, template_db: Path) -> Deploy:
    """The whole scenario for one ``--drain-spread``."""
    with contextlib.ExitStack() as stack:
        directory = base / f"spread-{spread:g}"
        directory.mkdir()
        url = stack.enter_context(redis_server(directory))
        db = directory / "demo.sqlite3"
        db.write_bytes(template_db.read_bytes())
        env = {"DEMO_DB": str(db), "DJANGO_SETTINGS_MODULE": SETTINGS, "REDIS_URL": url}
        a = Instance("A", free_port(), env, spread)
        b = Instance("B", free_port(), env, spread)
        for instance in (a, b):
            stack.callback(instance.stop)
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))
        proxy_port = free_port()
        proxy = stack.enter_context(run_nginx(directory, proxy_port, [a.port, b.port]))
        await asyncio.to_thread(proxy.wait_for, re.compile(rb"start worker process"), 15)
        base_url = f"http://127.0.0.1:{proxy_port}"
        await post(base_url, "seed: the message each subscription starts with")

        subscribers = [
            Subscriber(
                i, f"ws://127.0.0.1:{proxy_port}/graphql/", base_url, SUBSCRIPTION, {"room": ROOM}, random.Random(i)
            )
            for i in range(CLIENTS)
        ]
        tasks = [asyncio.create_task(s.run()) for s in subscribers]
        load = HTTPLoad(base_url)
        load_task: asyncio.Task[None] | None = None
        problems = Problems()
        try:
            await all_live(subscribers, 60)
            await reaches_everyone(base_url, subscribers, "before the deploy")
            on = {a.address: 0, b.address: 0}
            for s in subscribers:
                on[s.upstream or "?"] = on.get(s.upstream or "?", 0) + 1
            load_task = asyncio.create_task(load.run())
            first = await drain_and_restart(a, b, subscribers, spread, problems)
            # As an operator waits for the load balancer to take a restarted instance
            # back before draining the next one: otherwise, with passive checks, nginx
            # may still count A as failed (fail_timeout) when B stops accepting.
            await back_in_rotation(directory, a, time.time())
            phases = [first, await drain_and_restart(b, a, subscribers, spread, problems)]
            load.stop()
            await load_task
            try:
                await all_live(subscribers, 30)
                await reaches_everyone(base_url, subscribers, "after the deploy")
            except AssertionError as exc:
                problems.append(f"after the deploy: {exc}")
        finally:
            load.stop()
            if load_task is not None:
                await asyncio.gather(load_task, return_exceptions=True)
            await asyncio.gather(*(s.stop() for s in subscribers), return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for instance in (a, b):
            instance.stop()
        proxy.stop(signal.SIGQUIT, timeout=15)
        # Every log kept beside the test's files, for a look after a failure.
        for instance in (a, b):
            for number, process in enumerate(instance.generations):
                (directory / f"{instance.name}-{number}.log").write_text(process.text)
        (directory / "nginx.log").write_text(proxy.text)

        answers = load.answers
        not_ok = [a_ for a_ in answers if a_.status != 200]
        access = read_access_log(directory)
        retried = [line for line in access if len(line.upstreams) > 1 and "/graphql/" in line.request]
        latencies = sorted(answer.seconds for answer in answers)
        figures: dict[str, Any] = {
            "drain_spread_s": spread,
            "drain_delay_s": DRAIN_DELAY,
            "clients": CLIENTS,
            "workers_per_instance": WORKERS,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "clients_per_instance_before": on,
            "phases": phases,
            "peak_handshakes_per_s": max(p["peak_handshakes_per_s_at_staying"] for p in phases),
            "http_queries": len(answers),
            "http_not_200": [
                f"{x.method} {x.status} after {x.seconds:.1f}s from {x.upstream or '-'}: {x.error[:80]!r}"
                for x in not_ok[:20]
            ],
            "http_retried_by_nginx": len(retried),
            "nginx_upstream_errors": nginx_errors(proxy.text),
            "http_latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "http_latency_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
            "subscribers_gave_up": [s.index for s in subscribers if s.gave_up],
            "subscription_errors": sum(len(s.errors) for s in subscribers),
            "handshakes_refused": sum(len(s.refused) for s in subscribers),
        }
        print(f"\ndeploy figures, drain_spread={spread:g}: {figures}")
        bad = a.bad_lines() + b.bad_lines()
        problems.check(
            not not_ok, f"{len(not_ok)} of {len(answers)} queries through nginx were not 200: {figures['http_not_200']}"
        )
        problems.check(not bad, "ERROR lines or tracebacks in the server logs:\n" + "\n".join(bad[:40]))
        problems.check(not figures["subscribers_gave_up"], f"subscribers gave up: {figures['subscribers_gave_up']}")
        return Deploy(figures, problems)


# -- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("deploy-template") / "demo.sqlite3"
    migrate(db)
    return db


@pytest.fixture(scope="module")
def deploys(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Any]:
    """``deploys(spread)``: the rolling deploy with that ``--drain-spread``, run the first
    time it is asked for. Its figures are recorded (terminal summary, JSON) whatever the
    outcome; a deploy that could not run to the end fails every test asking for it."""
    done: dict[float, Deploy | BaseException] = {}
    base = tmp_path_factory.mktemp("deploy")

    def get(spread: float) -> Deploy:
        if spread not in done:
            try:
                deploy = asyncio.run(asyncio.wait_for(rolling_deploy(spread, base, template_db), DEPLOY_BOUND))
            except Exception as exc:
                done[spread] = exc
                raise
            done[spread] = deploy
            record(deploy.figures, tmp_path_factory.getbasetemp())
        result = done[spread]
        if isinstance(result, BaseException):
            raise AssertionError(f"the deploy with drain_spread={spread:g} failed earlier: {result!r}")
        return result

    yield get


@pytest.mark.timeout(2 * DEPLOY_BOUND)
@pytest.mark.parametrize("spread", SPREADS, ids=[f"drain_spread={s:g}" for s in SPREADS])
def test_rolling_deploy_keeps_every_subscriber_and_every_request(deploys: Any, spread: float) -> None:
    deploy = deploys(spread)
    if deploy.problems:
        pytest.fail("\n".join(deploy.problems), pytrace=False)


@pytest.mark.timeout(2 * DEPLOY_BOUND)
def test_drain_spread_lowers_the_peak_handshake_rate(deploys: Any) -> None:
    unpaced = deploys(0.0).figures["peak_handshakes_per_s"]
    paced = deploys(SPREAD).figures["peak_handshakes_per_s"]
    assert paced <= PACED_PEAK_RATIO * unpaced, (
        f"peak handshakes/s at the instance that stays up: {paced} with drain_spread={SPREAD:g}, "
        f"{unpaced} without; expected at most {PACED_PEAK_RATIO:.0%} of it"
    )
