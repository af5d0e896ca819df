"""Counters of subscription resolvers, so cleanup can be seen from outside the process.

Every subscription resolver of the schema calls :meth:`SubscriptionStats.started` once it is
live (for ``messages``: after it joined its channel-layer group) and
:meth:`SubscriptionStats.finished` in its ``finally``. The ``stats`` query reads the counts;
``awaitStats`` waits (on an event, not by polling) until they satisfy a condition, which is
how the tests prove that a client's ``complete`` or an abrupt disconnect really stopped the
server-side generator, and how they know 200 subscribers have joined before posting.

The counters are per process: with several workers, each reports its own (``pid`` says which).
All calls happen on the process's event loop, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """The counts at one moment."""

    pid: int
    active: dict[str, int]
    finished: dict[str, int]

    def active_total(self, field: str | None = None) -> int:
        return self.active.get(field, 0) if field else sum(self.active.values())

    def finished_total(self, field: str | None = None) -> int:
        return self.finished.get(field, 0) if field else sum(self.finished.values())


class SubscriptionStats:
    """Active and finished subscription counts, by field name, with waiters."""

    def __init__(self) -> None:
        self._active: Counter[str] = Counter()
        self._finished: Counter[str] = Counter()
        self._changed: list[asyncio.Future[None]] = []

    def started(self, field: str) -> None:
        """A resolver of ``field`` is live."""
        self._active[field] += 1
        self._notify()

    def finished(self, field: str) -> None:
        """A resolver of ``field`` ran its ``finally``."""
        self._active[field] -= 1
        self._finished[field] += 1
        self._notify()

    def snapshot(self) -> Snapshot:
        return Snapshot(os.getpid(), dict(+self._active), dict(+self._finished))

    async def wait_until(self, condition: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
        """Return the first snapshot for which ``condition`` holds; TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition(snap := self.snapshot()):
            waiter = loop.create_future()
            self._changed.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            finally:
                if waiter in self._changed:
                    self._changed.remove(waiter)
        return snap

    def _notify(self) -> None:
        waiters, self._changed = self._changed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


#: The process's counters, shared by every resolver.
STATS = SubscriptionStats()
