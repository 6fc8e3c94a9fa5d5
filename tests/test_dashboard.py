"""The Perses dashboard in deploy/perses/ checked offline: it parses, it has the shape Perses reads, and
every query is PromQL over series the services export (docs/telemetry.md's metric table)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.metric_table import load_table, series_labels
from tests.perses import dashboards, load_resources, queries, query_problems, structure_problems

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "deploy" / "perses" / "provisioning"
# What the dashboard must show (issue 16): rates, lag percentiles, queue sizes, drops, resyncs and
# book state per instrument and connector.
MUST_SHOW = {
    "md_events_published_total",
    "md_events_received_total",
    "messaging_client_consumed_messages_total",
    "md_lag_exchange_to_receive_seconds_bucket",
    "md_lag_receive_to_publish_seconds_bucket",
    "md_lag_publish_to_consume_seconds_bucket",
    "md_queue_size",
    "md_events_dropped_total",
    "md_events_rejected_total",
    "md_book_resyncs_total",
    "md_book_gaps_total",
    "md_connector_errors_total",
    "md_connector_reconnects_total",
    "strategy_signals_total",
}

Resources = list[tuple[str, dict[str, Any]]]


def _resources() -> Resources:
    return load_resources(PROVISIONING)


def _all_query_problems(resources: Resources) -> list[str]:
    series = series_labels(load_table())
    return [
        f"{where}: {problem}"
        for source, spec in dashboards(resources)
        for where, query, legend in queries(spec)
        for problem in [f"{source} {p}" for p in query_problems(query, series, legend)]
    ]


def test_the_provisioning_folder_holds_a_project_a_datasource_and_the_dashboard() -> None:
    resources = _resources()

    kinds = sorted(resource["kind"] for _, resource in resources)

    assert kinds == ["Dashboard", "GlobalDatasource", "Project"]


def test_the_resources_have_the_shape_perses_reads() -> None:
    resources = _resources()

    problems = structure_problems(resources)

    assert problems == []


def test_every_query_is_promql_over_series_the_services_export() -> None:
    resources = _resources()

    problems = _all_query_problems(resources)

    assert problems == []
    assert sum(1 for _, spec in dashboards(resources) for _ in queries(spec)) >= 20


def test_the_dashboard_shows_rates_lags_queues_drops_resyncs_and_books() -> None:
    resources = _resources()
    used = set()
    for _, spec in dashboards(resources):
        used |= {
            name for _, query, _ in queries(spec) for name in series_labels(load_table()) if name in query
        }

    missing = MUST_SHOW - used

    assert missing == set()


# --- the checks can fail -----------------------------------------------------------------------------


def _dashboard(resources: Resources) -> dict[str, Any]:
    return next(r for _, r in resources if r["kind"] == "Dashboard")


def _first_query(resources: Resources) -> dict[str, Any]:
    panel = _dashboard(resources)["spec"]["panels"]["events_published"]
    spec: dict[str, Any] = panel["spec"]["queries"][0]["spec"]["plugin"]["spec"]
    return spec


def _set_query(text: str, legend: str = "") -> Callable[[Resources], None]:
    def mutate(resources: Resources) -> None:
        query = _first_query(resources)
        query["query"] = text
        query["seriesNameFormat"] = legend

    return mutate


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _set_query("rate(md_events_published[1m])"),
            "selects md_events_published, which is not a series",
            id="otel-name-not-prometheus-name",
        ),
        pytest.param(
            _set_query("rate(md_lag_exchange_to_receive_seconds[1m])"),
            "md_lag_exchange_to_receive_seconds, which is not a series",
            id="histogram-without-suffix",
        ),
        pytest.param(_set_query("sum(rate(md_events_published_total[1m])"), "not valid PromQL", id="syntax"),
        pytest.param(
            _set_query('md_queue_size{symbol="X"}'),
            "matches label 'symbol', which md_queue_size does not carry",
            id="label-not-carried",
        ),
        pytest.param(
            _set_query("sum by (exchange) (md_queue_size)"),
            "groups or joins on 'exchange'",
            id="group-by-missing-label",
        ),
        pytest.param(
            _set_query("histogram_quantile(0.9, sum by (le) (rate(md_events_published_total[1m])))"),
            "groups or joins on 'le'",
            id="quantile-of-a-counter",
        ),
        pytest.param(
            _set_query("md_queue_size / on (symbol) md_queue_size"),
            "groups or joins on 'symbol'",
            id="join-on-missing-label",
        ),
        pytest.param(
            _set_query("sum by (symbol) (rate(md_events_published_total[1m]))", "{{strategy}}"),
            "legend uses {{strategy}}",
            id="legend-label",
        ),
        pytest.param(_set_query('{job="x"}'), "names no metric", id="no-metric-name"),
        pytest.param(
            _set_query("rate(md_events_published_total[$nope])"),
            "uses $nope, which is neither",
            id="undefined-variable",
        ),
    ],
)
def test_query_problems_are_reported(mutation: Callable[[Resources], None], complaint: str) -> None:
    resources = copy.deepcopy(_resources())
    mutation(resources)

    problems = _all_query_problems(resources) + structure_problems(resources)

    assert any(complaint in problem for problem in problems), problems


def _edit(
    path: tuple[str | int, ...], value: object = None, delete: bool = False
) -> Callable[[Resources], None]:
    def mutate(resources: Resources) -> None:
        node: Any = _dashboard(resources)
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _edit(("spec", "layouts", 0, "spec", "items", 0, "content", "$ref"), "#/spec/panels/ghost"),
            "places 'ghost', which is not a panel",
            id="dangling-ref",
        ),
        pytest.param(
            _edit(("spec", "layouts", 0, "spec", "items", 1, "x"), 0),
            "overlaps 'publish_rate'",
            id="overlap",
        ),
        pytest.param(
            _edit(("spec", "layouts", 0, "spec", "items", 0, "width"), 30),
            "ends past column 24",
            id="too-wide",
        ),
        pytest.param(_edit(("spec", "layouts", 3), delete=True), "is in no layout", id="panel-not-placed"),
        pytest.param(
            _edit(("spec", "panels", "publish_rate", "spec", "plugin", "spec", "calculatoin"), "last"),
            "'calculatoin' was unexpected",
            id="unknown-plugin-key",
        ),
        pytest.param(
            _edit(("spec", "panels", "publish_rate", "spec", "plugin", "kind"), "Gauge"),
            "'Gauge' is not one of",
            id="unknown-panel-plugin",
        ),
        pytest.param(
            _edit(
                ("spec", "panels", "events_published", "spec", "queries", 0, "spec", "plugin", "spec", "q"),
                "x",
            ),
            "'q' was unexpected",
            id="unknown-query-key",
        ),
        pytest.param(_edit(("spec", "duration"), "30 minutes"), "does not match", id="bad-duration"),
        pytest.param(
            _edit(("metadata", "project"), "nope"), "project 'nope' is not provisioned", id="no-project"
        ),
        pytest.param(
            _edit(("spec", "variables", 1, "spec", "name"), "exchange"),
            "variable 'exchange' is defined twice",
            id="variable-twice",
        ),
        pytest.param(_edit(("spec", "panels", "bad id!"), {}), "does not match", id="bad-panel-id"),
    ],
)
def test_structure_problems_are_reported(mutation: Callable[[Resources], None], complaint: str) -> None:
    resources = copy.deepcopy(_resources())
    mutation(resources)

    problems = structure_problems(resources)

    assert any(complaint in problem for problem in problems), problems


def test_a_second_default_datasource_is_reported() -> None:
    resources = copy.deepcopy(_resources())
    datasource = next(r for _, r in resources if r["kind"] == "GlobalDatasource")
    resources.append(("extra.yaml", {**copy.deepcopy(datasource), "metadata": {"name": "other"}}))

    problems = structure_problems(resources)

    assert any("exactly one default" in problem for problem in problems), problems
