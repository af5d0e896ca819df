"""One timer for every connection of a worker.

A subscription server holds thousands of sockets, each with deadlines that are re-armed
far more often than they fire: the keepalive ping after the last frame heard, the pong
timeout, the HTTP keep-alive timeout after each response. One ``loop.call_at`` handle per
deadline would put a handle per socket in the loop's own heap. :class:`TimerHeap` keeps
every deadline of the worker in one heap of plain tuples, with one loop handle armed for
the earliest of them.

An entry is ``(when, seq, owner, name)``. An owner (a connection) keeps, per timer name,
its one live entry; re-arming to a later moment keeps the entry, which
fires first and is re-armed by the owner for the rest (most re-arms cost nothing);
re-arming earlier pushes a new entry and the old one goes stale. Stale entries are
skipped when they come due and swept out when they are more than half the heap, so a
closed connection is not kept alive by its entries for long.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Protocol

__all__ = ["SLACK", "Entry", "TimerHeap", "TimerOwner"]

#: Deadlines this close are fired together in one wake-up: the server's timeouts are
#: seconds long, and thousands of sockets' pings would otherwise wake the loop one by one.
SLACK = 0.005


Entry = tuple[float, int, "TimerOwner", str]


class TimerOwner(Protocol):
    #: timer name -> its live heap entry
    scheduled: dict[str, Entry]

    def timer_due(self, name: str, now: float) -> None: ...


class TimerHeap:
    """Every armed deadline of one worker, with one loop timer for the earliest."""

    __slots__ = ("armed_at", "handle", "heap", "loop", "seq", "stale")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[Entry] = []
        self.handle: asyncio.TimerHandle | None = None
        self.armed_at = 0.0
        self.seq = 0
        #: Entries known to be dead (superseded, or their owner gone).
        self.stale = 0

    def schedule(self, owner: TimerOwner, name: str, when: float) -> None:
        """Arm ``owner``'s timer ``name`` at ``when``, replacing an entry it has."""
        if name in owner.scheduled:
            self.stale += 1
        self.seq += 1
        owner.scheduled[name] = entry = (when, self.seq, owner, name)
        heapq.heappush(self.heap, entry)
        if self.handle is None or when < self.armed_at:
            self._arm(when)

    def forget(self, owner: TimerOwner) -> None:
        """``owner`` is gone: its entries are dead."""
        self.stale += len(owner.scheduled)
        owner.scheduled.clear()
        if self.stale * 2 > len(self.heap):  # amortized O(1); dead owners never pile up
            self._sweep()

    def __len__(self) -> int:
        return len(self.heap) - self.stale

    def _arm(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.armed_at = when
        self.handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.handle = None
        heap = self.heap
        now = self.loop.time()
        horizon = now + SLACK
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            owner = entry[2]
            name = entry[3]
            if owner.scheduled.get(name) is not entry:
                self.stale -= 1
                continue
            del owner.scheduled[name]
            owner.timer_due(name, horizon)
        if heap and (self.handle is None or heap[0][0] < self.armed_at):
            self._arm(heap[0][0])

    def _sweep(self) -> None:
        self.heap = [entry for entry in self.heap if entry[2].scheduled.get(entry[3]) is entry]
        heapq.heapify(self.heap)
        self.stale = 0
