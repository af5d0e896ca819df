"""docs/observability.md and docs/grafana-dashboard.json against the metrics the server
exports: every metric the dashboard's queries and the documented alert rules use is one
the metric table lists, the table lists exactly the metrics of
``channelserver.monitor.catalog``, with their types and labels, and the dashboard imports
(unique panel ids, a grid position each, the data source an import asks for)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDE = DOCS / "observability.md"
DASHBOARD = DOCS / "grafana-dashboard.json"

METRIC = re.compile(r"channelserver_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_table() -> dict[str, tuple[str, frozenset[str]]]:
    """The rows of the tables under "## The metrics": name -> (type, labels)."""
    text = GUIDE.read_text()
    section = text.split("\n## The metrics\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in section.splitlines():
        match = re.match(r"\| `(channelserver_[a-z_]+)` \| (\w+) \|([^|]*)\|", line)
        if match is None:
            continue
        name, kind, labels = match.groups()
        assert name not in rows, f"{name} is listed twice"
        rows[name] = (kind, frozenset(re.findall(r"`(\w+)`", labels)))
    assert rows, "no metric table found under '## The metrics'"
    return rows


def base_name(sample: str, table: dict[str, tuple[str, frozenset[str]]]) -> str:
    """The metric a sample name belongs to: a histogram's ``_bucket``, ``_sum`` and
    ``_count`` series belong to the histogram."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = sample.removesuffix(suffix)
        if base != sample and table.get(base, ("", frozenset()))[0] == "histogram":
            return base
    return sample


def alert_rules() -> str:
    """The Prometheus rules YAML block of the guide: the fenced yaml block with ``groups:``."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    rules = [block for block in blocks if block.startswith("groups:")]
    assert len(rules) == 1, "expected one alert rules block (```yaml starting with groups:)"
    return rules[0]


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, with those nested in collapsed rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    queries = [target["expr"] for panel in panels(board["panels"]) for target in panel.get("targets", [])]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return queries


def test_every_metric_the_dashboard_queries_is_in_the_table() -> None:
    table = metric_table()
    board = dashboard()
    used = {base_name(name, table) for query in dashboard_queries(board) for name in METRIC.findall(query)}
    assert used, "the dashboard queries no channelserver metric"
    assert used <= set(table), f"not in the metric table: {sorted(used - set(table))}"


def test_every_metric_the_alert_rules_use_is_in_the_table() -> None:
    table = metric_table()
    used = {base_name(name, table) for name in METRIC.findall(alert_rules())}
    assert used, "the alert rules use no channelserver metric"
    assert used <= set(table), f"not in the metric table: {sorted(used - set(table))}"


def test_the_dashboard_shows_every_metric() -> None:
    table = metric_table()
    used = {base_name(name, table) for query in dashboard_queries(dashboard()) for name in METRIC.findall(query)}
    assert set(table) <= used, f"no panel shows: {sorted(set(table) - used)}"


def test_dashboard_panels_have_unique_ids_and_a_place() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board["panels"])]
    assert len(ids) == len(set(ids)), f"repeated panel ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    for panel in panels(board["panels"]):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["type"] == "row" or panel["targets"], panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_asks_for_its_data_source_on_import() -> None:
    board = dashboard()
    assert [(i["name"], i["type"], i["pluginId"]) for i in board["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36


def test_the_table_lists_exactly_the_metrics_the_server_exports() -> None:
    from channelserver.monitor.catalog import METRICS

    table = metric_table()
    exported = {m.name for m in METRICS}
    assert set(table) == exported, (
        f"in the table only: {sorted(set(table) - exported)}; exported only: {sorted(exported - set(table))}"
    )


def test_the_table_gives_each_metric_its_type_and_labels() -> None:
    from channelserver.monitor.catalog import METRICS

    table = metric_table()
    for metric in METRICS:
        if metric.name not in table:
            continue  # reported by the test above
        assert table[metric.name] == (metric.kind, frozenset(metric.labels)), metric.name
