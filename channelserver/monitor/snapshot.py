"""The plain data of one worker's metrics, and the parent's sum of them.

A :class:`Snapshot` holds, per metric name, a dict from label values to a number (a
counter or gauge) or to ``(counts per bucket, sum)`` (a histogram, the counts not
cumulative). Label values leave out ``worker``: :class:`Gathered` adds it.

:class:`Gathered` keeps the latest snapshot of each live worker and, when one exits, adds
its last counters and histograms to what the exited workers counted: the totals it gives
never go backwards when a worker is replaced. A worker killed without a last word loses
at most what it counted since its last snapshot (about a second).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from .catalog import METRICS, RESTART_REASONS

__all__ = ["Gathered", "Labels", "Snapshot"]

Labels = tuple[str, ...]
HistogramValue = tuple[list[int], float]
#: metric name -> label values -> a number (counters, gauges) or a HistogramValue
Values = dict[str, dict[Any, Any]]

_PER_WORKER = frozenset(metric.name for metric in METRICS if metric.labels[:1] == ("worker",))


@dataclass
class Snapshot:
    counters: Values = field(default_factory=dict)
    histograms: Values = field(default_factory=dict)
    gauges: Values = field(default_factory=dict)

    def labelled(self, worker: str) -> Snapshot:
        """A copy with ``worker`` put first in the labels of the per-worker metrics."""

        def tag(name: str, values: dict[Any, Any]) -> dict[Any, Any]:
            if name not in _PER_WORKER:
                return dict(values)
            return {(worker, *labels): value for labels, value in values.items()}

        return Snapshot(
            counters={name: tag(name, values) for name, values in self.counters.items()},
            histograms={name: tag(name, values) for name, values in self.histograms.items()},
            gauges={name: tag(name, values) for name, values in self.gauges.items()},
        )


def _add_counters(into: Values, source: Values) -> None:
    for name, values in source.items():
        target = into.setdefault(name, {})
        for labels, value in values.items():
            target[labels] = target.get(labels, 0) + value


def _add_histograms(into: Values, source: Values) -> None:
    for name, values in source.items():
        target = into.setdefault(name, {})
        for labels, (counts, total) in values.items():
            if labels in target:
                have, have_total = target[labels]
                target[labels] = ([a + b for a, b in zip(have, counts, strict=True)], have_total + total)
            else:
                target[labels] = (list(counts), total)


class Gathered:
    """Every worker's numbers, summed; fed by the supervisor's thread, read by the
    metrics listener's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: worker key -> its latest snapshot, labelled with its slot
        self._live: dict[Hashable, Snapshot] = {}
        self._retired = Snapshot()
        #: The parent's own numbers: restarts by reason, workers serving.
        self.restarts: dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)
        self.workers = 0

    def update(self, key: Hashable, slot: int, snapshot: Snapshot) -> None:
        labelled = snapshot.labelled(str(slot))
        with self._lock:
            self._live[key] = labelled

    def retire(self, key: Hashable) -> None:
        """The worker exited: keep its counters and histograms, drop its gauges."""
        with self._lock:
            last = self._live.pop(key, None)
            if last is not None:
                _add_counters(self._retired.counters, last.counters)
                _add_histograms(self._retired.histograms, last.histograms)

    def restarted(self, reason: str) -> None:
        with self._lock:
            self.restarts[reason] = self.restarts.get(reason, 0) + 1

    def view(self) -> Snapshot:
        """The whole server's numbers now."""
        with self._lock:
            total = Snapshot()
            _add_counters(total.counters, self._retired.counters)
            _add_histograms(total.histograms, self._retired.histograms)
            for snapshot in self._live.values():
                _add_counters(total.counters, snapshot.counters)
                _add_histograms(total.histograms, snapshot.histograms)
                # A draining worker and its replacement share a slot: their gauges add up.
                _add_counters(total.gauges, snapshot.gauges)
            total.counters["channelserver_worker_restarts_total"] = {
                (reason,): n for reason, n in self.restarts.items()
            }
            total.gauges["channelserver_workers"] = {(): self.workers}
            return total
