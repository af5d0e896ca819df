"""Reconnecting graphql-transport-ws subscribers, retrying as the ``graphql-ws`` library does.

The ``graphql-ws`` JavaScript client (the one Apollo's ``GraphQLWsLink`` and urql use) keeps
a subscription alive across server restarts like this, with its defaults:

- the socket closes with a code other than 1000 (1001, 1006, 1012, 1013, ...), or the
  handshake fails (a browser reports that as close 1006): wait, reconnect, send
  ``connection_init``, and on ``connection_ack`` subscribe again with the same payload;
- the wait is ``retryWait(retries)``: ``1000 * 2**retries`` ms plus a random 300 to 3000 ms
  ("randomised exponential backoff"); ``retries`` counts the attempts since the last
  ``connection_ack`` and goes back to 0 on every ack;
- after ``retryAttempts`` (5) attempts in a row without an ack it gives up;
- 1002, 1011, 4400, 4401, 4409 and 4429 are fatal: reported, not retried.

:class:`Subscriber` does the same over ``websockets``, one connection and one subscription
(``messages(room, recent: 1)``) per client, and records what happened with the loop's clock:
each accepted handshake with the instance nginx sent it to (nginx's ``X-Upstream`` header),
each close with its code, each refused handshake with its status, and the gap from a close
to the subscription being live again. The subscription counts as live once its first result
(the room's latest message, read after joining the room's group) arrived: from then on a
message posted anywhere reaches it.

A subscription refused with an ``error`` (a draining server's ``SERVER_RESTARTING``) is
retried the way an application using ``graphql-ws`` would: on a new connection, after the
same backoff.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

PROTOCOL = "graphql-transport-ws"
RETRY_ATTEMPTS = 5
FATAL_CLOSE_CODES = frozenset({1002, 1011, 4400, 4401, 4409, 4429})
#: How long a connection attempt and the ``connection_ack`` may take.
OPEN_TIMEOUT = 10.0


def retry_wait(retries: int, rng: random.Random) -> float:
    """graphql-ws's default ``retryWait``, in seconds."""
    return (1000 * (1 << retries) + rng.randint(300, 2999)) / 1000


@dataclass
class Handshake:
    at: float
    upstream: str


@dataclass
class Closed:
    at: float
    code: int | None
    upstream: str


@dataclass
class Refused:
    """A handshake that did not open: its HTTP status, or the error."""

    at: float
    what: str


@dataclass
class Subscriber:
    index: int
    url: str
    origin: str
    subscription: str
    variables: dict[str, Any]
    rng: random.Random
    handshakes: list[Handshake] = field(default_factory=list)
    closes: list[Closed] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    #: When the subscription went live, each time (the first result on a new connection).
    live_at: list[float] = field(default_factory=list)
    #: Seconds from a close to the subscription being live again.
    gaps: list[float] = field(default_factory=list)
    #: Every result's ``data``, in order.
    results: list[dict[str, Any]] = field(default_factory=list)
    gave_up: str | None = None
    upstream: str | None = None
    live: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set on every result: tests wait on it for a message to arrive.
    received: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _ws: ClientConnection | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def back_since(self, since: float) -> bool:
        """Closed at or after ``since`` and live again after that close."""
        closed = next((c.at for c in self.closes if c.at >= since), None)
        return closed is not None and self.live.is_set() and self.live_at[-1] > closed

    async def wait_back(self, since: float) -> float:
        """Wait until :meth:`back_since`; the time the subscription went live again."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.back_since(since))
        return self.live_at[-1]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def clock(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> None:
        """Connect, subscribe, and keep the subscription alive until :meth:`stop`."""
        retries = 0
        retrying = False
        down_since: float | None = None
        while not self._stopping:
            if retrying:
                if retries >= RETRY_ATTEMPTS:
                    self.gave_up = f"{retries} attempts in a row without connection_ack"
                    return
                await asyncio.sleep(retry_wait(retries, self.rng))
                retries += 1
                if self._stopping:
                    return
            retrying = True
            try:
                ws = await connect(
                    self.url,
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    origin=self.origin,  # type: ignore[arg-type]
                    open_timeout=OPEN_TIMEOUT,
                    ping_interval=None,
                    compression=None,
                    proxy=None,
                    close_timeout=5,
                )
            except InvalidStatus as exc:
                self.refused.append(Refused(self.clock, str(exc.response.status_code)))
                continue
            except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
                self.refused.append(Refused(self.clock, f"{type(exc).__name__}: {exc}"))
                continue
            # nginx's $upstream_addr: "A, B" after a retry; B accepted.
            header = ws.response.headers.get("x-upstream", "?") if ws.response is not None else "?"
            upstream = header.split(",")[-1].strip()
            self.handshakes.append(Handshake(self.clock, upstream))
            self._ws = ws
            try:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                message = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
                if message.get("type") != "connection_ack":
                    raise AssertionError(f"expected connection_ack, got {message!r}")
                retries = 0
                await ws.send(
                    json.dumps(
                        {
                            "id": "1",
                            "type": "subscribe",
                            "payload": {"query": self.subscription, "variables": self.variables},
                        }
                    )
                )
                async for raw in ws:
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    elif kind == "next":
                        self.results.append(message["payload"].get("data"))
                        if not self.live.is_set():
                            self.upstream = upstream
                            self.live_at.append(self.clock)
                            self.live.set()
                            await self._notify()
                            if down_since is not None:
                                self.gaps.append(self.clock - down_since)
                                down_since = None
                        self.received.set()
                    elif kind in ("error", "complete"):
                        # The subscription ended while the socket stays open: a new
                        # connection and a new subscription, after the backoff.
                        self.errors.append(message.get("payload"))
                        await ws.close(1000)
                        break
            except (ConnectionClosed, asyncio.TimeoutError, OSError):
                pass
            finally:
                self._ws = None
                self.live.clear()
                if down_since is None:
                    down_since = self.clock
                if ws.close_code is None and not self._stopping:
                    await ws.close()
                self.closes.append(Closed(self.clock, ws.close_code, upstream))
                await self._notify()
            if ws.close_code in FATAL_CLOSE_CODES:
                self.gave_up = f"fatal close code {ws.close_code}"
                return

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close(1000)
