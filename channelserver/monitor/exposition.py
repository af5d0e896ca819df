"""The Prometheus text format of a :class:`~.snapshot.Snapshot`, made by
``prometheus_client`` from the catalog: a custom collector, read at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import StartupError

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString
except ImportError:  # pragma: no cover - checked at start-up by require()
    HAVE_PROMETHEUS_CLIENT = False
else:
    HAVE_PROMETHEUS_CLIENT = True

from .catalog import DURATION_BUCKETS, LAG_BUCKETS, METRICS, SIZE_BUCKETS
from .snapshot import Snapshot

__all__ = ["Exposition", "require"]

_BOUNDS = {
    "channelserver_http_request_duration_seconds": DURATION_BUCKETS,
    "channelserver_websocket_message_size_bytes": SIZE_BUCKETS,
    "channelserver_event_loop_lag_seconds": LAG_BUCKETS,
}


def require() -> None:
    """Raise :class:`StartupError` unless ``prometheus_client`` can be imported."""
    if not HAVE_PROMETHEUS_CLIENT:
        raise StartupError("--metrics needs the prometheus_client package: pip install 'channelserver[metrics]'")


class _Collector:
    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        snapshot = self.source()
        for metric in METRICS:
            name, labels = metric.name, list(metric.labels)
            if metric.kind == "histogram":
                family: Any = HistogramMetricFamily(name, metric.help, labels=labels)
                bounds = [*map(floatToGoString, _BOUNDS[name]), "+Inf"]
                for values, (counts, total) in sorted(snapshot.histograms.get(name, {}).items()):
                    cumulative, buckets = 0, []
                    for bound, count in zip(bounds, counts, strict=True):
                        cumulative += count
                        buckets.append((bound, cumulative))
                    family.add_metric(list(values), buckets, total)
            else:
                kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
                family = kind(name, metric.help, labels=labels)
                store = snapshot.counters if metric.kind == "counter" else snapshot.gauges
                for values, value in sorted(store.get(name, {}).items()):
                    family.add_metric(list(values), value)
            yield family


class Exposition:
    """``render()`` gives the text format of what ``source()`` returns at that moment."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        require()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(source))
        self.content_type = CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        return generate_latest(self.registry)
