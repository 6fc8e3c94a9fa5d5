"""docs/telemetry.md's metric table is the truth: the code creates exactly those instruments, the running
services export them as the table says, and the table's Prometheus column follows the exporter's rules."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import nats
import pytest

from schemas import subjects
from tests.metric_table import (
    KINDS,
    code_instruments,
    instruments_in_source,
    load_table,
    parse_table,
    prometheus_label,
    prometheus_series,
)
from tests.otlp_receiver import OTLPReceiver
from tests.test_telemetry import _env, services

# Exported only once something happens that a healthy stub run does not do (tests/test_feed_metrics.py
# makes them happen): a rejected connector event, a book resynced by the feed or the venue.
ONLY_ON_INCIDENTS = frozenset({"md.events.rejected", "md.book.resyncs"})
# The OTLP data kind each table kind arrives as.
OTLP_KIND = {"counter": "sum", "gauge": "gauge", "histogram": "histogram"}


def test_the_table_lists_every_instrument_the_code_creates() -> None:
    table = load_table()

    created = code_instruments()

    assert sorted({i.name for i in created}) == sorted(table), "docs/telemetry.md and services/ disagree"
    for instrument in created:
        row = table[instrument.name]
        assert (instrument.kind, instrument.unit) == (row.kind, row.unit), instrument.where


def test_every_table_row_is_well_formed() -> None:
    table = load_table()

    assert table, "no metric rows"
    for metric in table.values():
        assert metric.kind in KINDS, metric.name
        assert metric.attributes, f"{metric.name}: no attributes listed"


def test_the_prometheus_column_follows_the_exporter_naming() -> None:
    table = load_table()

    for metric in table.values():
        assert metric.series == prometheus_series(metric.name, metric.kind, metric.unit), metric.name


@pytest.mark.parametrize(
    ("name", "kind", "unit", "series"),
    [
        ("md.events.published", "counter", "{event}", ("md_events_published_total",)),
        ("md.queue.size", "gauge", "{event}", ("md_queue_size",)),
        (
            "md.lag.exchange_to_receive",
            "histogram",
            "s",
            (
                "md_lag_exchange_to_receive_seconds_bucket",
                "md_lag_exchange_to_receive_seconds_sum",
                "md_lag_exchange_to_receive_seconds_count",
            ),
        ),
        (
            "rpc.duration",
            "histogram",
            "ms",
            tuple(f"rpc_duration_milliseconds_{suffix}" for suffix in ("bucket", "sum", "count")),
        ),
        ("cpu.utilization", "gauge", "1", ("cpu_utilization_ratio",)),
        ("requests.total", "counter", "1", ("requests_total",)),
        ("memory.usage.bytes", "gauge", "By", ("memory_usage_bytes",)),
        ("net.io", "counter", "By/s", ("net_io_bytes_per_second_total",)),
        ("queue..depth", "gauge", "", ("queue_depth",)),
    ],
)
def test_prometheus_series_naming(name: str, kind: str, unit: str, series: tuple[str, ...]) -> None:
    named = prometheus_series(name, kind, unit)

    assert named == series


def test_attribute_keys_become_label_names() -> None:
    assert prometheus_label("messaging.destination.template") == "messaging_destination_template"
    assert prometheus_label("symbol") == "symbol"
    assert prometheus_label("2xx.count") == "key_2xx_count"


def test_the_code_scan_sees_instruments_and_rejects_computed_names() -> None:
    source = (
        "observable_counter(meter, 'a.b', points)\n"
        "observable_gauge(meter, 'c', points, '{x}', 'd')\n"
        "meter.create_histogram('e.f', unit='s')\n"
    )

    found = instruments_in_source(source, "x.py")

    assert [(i.name, i.kind, i.unit) for i in found] == [
        ("a.b", "counter", "{event}"),
        ("c", "gauge", "{x}"),
        ("e.f", "histogram", "s"),
    ]
    with pytest.raises(ValueError, match="not a string literal"):
        instruments_in_source("meter.create_counter(prefix + '.x')", "y.py")


def test_the_table_parser_rejects_duplicates() -> None:
    header = (
        "| metric | kind | unit | from | attributes | Prometheus series |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    )
    row = "| `a.b` | counter | `{x}` | feed | k | `a_b_total` |\n"

    assert parse_table(header + row)["a.b"].series == ("a_b_total",)
    with pytest.raises(ValueError, match="twice"):
        parse_table(header + row + row)


async def _ask_context(nats_url: str, symbol: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.request(subjects.context_snapshot(symbol), b"", timeout=2)
    finally:
        await nc.drain()


def test_the_running_services_export_what_the_table_says(nats_url: str, unique: str) -> None:
    table = load_table()
    expected = set(table) - ONLY_ON_INCIDENTS

    def exported(receiver: OTLPReceiver) -> set[str]:
        return {p["name"] for p in receiver.snapshot()[1]}

    with OTLPReceiver() as receiver:
        env = _env(nats_url, unique, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        with services(env):
            receiver.wait_for(lambda r: "messaging.client.consumed.messages" in exported(r))
            asyncio.run(_ask_context(nats_url, unique))
            receiver.wait_for(lambda r: expected <= exported(r))
        _, points = receiver.snapshot()

    attributes: dict[str, set[str]] = defaultdict(set)
    for point in points:
        name = point["name"]
        assert name in table, f"{point['service']} exports {name}, which docs/telemetry.md does not list"
        row = table[name]
        assert point["type"] == OTLP_KIND[row.kind], name
        assert point["unit"] == row.unit, name
        attributes[name] |= set(point["attributes"])
    for name, seen in attributes.items():
        assert seen <= table[name].attributes, f"{name} carries {sorted(seen - table[name].attributes)}"
