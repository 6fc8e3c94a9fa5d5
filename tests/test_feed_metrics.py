"""The feed's md.* metrics carry the Binance books' resyncs and gaps and the connector's errors."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.common.bus import Bus
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.book import MAX_BUFFER
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.parse import Snapshot
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.metrics import register_feed_metrics
from services.connector_feed.stream import HFTConnectorStream
from tests.fake_binance import combined, dumps, spot_depth_diff
from tests.helpers import native

TS = 1_770_000_000_000


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = [(p.value, dict(p.attributes or {})) for p in metric.data.data_points]  # type: ignore[union-attr]
    return out


async def test_binance_book_resyncs_gaps_and_errors_reach_the_metrics(nats_url: str) -> None:
    connector = BinanceConnector(BinanceSettings(symbols="BTCUSDT"))
    decoder = connector.decoder
    bus = await Bus.connect(nats_url, "test-metrics")
    stream = HFTConnectorStream(connector, bus, 100)
    reader = InMemoryMetricReader()
    register_feed_metrics(MeterProvider(metric_readers=[reader]).get_meter("t"), stream)

    def diff(first: int, last: int) -> str:
        return dumps(
            combined("btcusdt@depth@100ms", spot_depth_diff("BTCUSDT", first, last, [["1.0", "1.0"]], [], TS))
        )

    decoder.on_frame(diff(100, 102), TS)
    decoder.on_snapshot("BTCUSDT", Snapshot(100, [("1.0", "2.0")], [("2.0", "1.0")]))  # synced
    decoder.on_frame(diff(105, 106), TS)  # 103..104 missing: a gap
    decoder.on_frame("{not json", TS)
    points = _points(reader)
    await bus.drain()

    assert (1, {"exchange": "binance", "symbol": "BTCUSDT", "source": "venue"}) in points["md.book.resyncs"]
    assert points["md.book.gaps"] == [(1, {"exchange": "binance", "symbol": "BTCUSDT"})]
    assert (1, {"exchange": "binance", "kind": "malformed_not_json"}) in points["md.connector.errors"]


async def test_a_book_buffer_overflow_is_ours_and_counted_apart_from_venue_gaps(nats_url: str) -> None:
    connector = BinanceConnector(BinanceSettings(symbols="BTCUSDT"))
    decoder = connector.decoder
    bus = await Bus.connect(nats_url, "test-metrics")
    stream = HFTConnectorStream(connector, bus, 100)
    reader = InMemoryMetricReader()
    register_feed_metrics(MeterProvider(metric_readers=[reader]).get_meter("t"), stream)

    def diff(update_id: int) -> str:
        payload = spot_depth_diff("BTCUSDT", update_id, update_id, [["1.0", "1.0"]], [], TS)
        return dumps(combined("btcusdt@depth@100ms", payload))

    for update_id in range(1, MAX_BUFFER + 2):  # one more than the book buffers while it awaits a snapshot
        decoder.on_frame(diff(update_id), TS)
    overflowed = _points(reader)
    decoder.on_snapshot("BTCUSDT", Snapshot(MAX_BUFFER + 1, [("1.0", "2.0")], []))
    decoder.on_frame(diff(MAX_BUFFER + 2), TS)  # synced on this diff
    decoder.on_frame(diff(MAX_BUFFER + 4), TS)  # MAX_BUFFER + 3 missing: a gap in the venue's chain
    points = _points(reader)
    await bus.drain()

    overflow = (1, {"exchange": "binance", "kind": "book_buffer_overflow"})
    assert overflow in overflowed["md.connector.errors"]
    assert overflowed["md.book.gaps"] == [(0, {"exchange": "binance", "symbol": "BTCUSDT"})]
    assert overflow in points["md.connector.errors"]
    assert points["md.book.gaps"] == [(1, {"exchange": "binance", "symbol": "BTCUSDT"})]
    assert connector.health()["books"]["BTCUSDT"]["buffer_overflows"] == 1


async def test_dropped_and_rejected_events_reach_the_metrics(nats_url: str) -> None:
    from tests.fakes import ScriptedConnector

    bus = await Bus.connect(nats_url, "test-metrics-2")
    stream = HFTConnectorStream(native(ScriptedConnector(), ["X"], ReconnectPolicy()), bus, 2)
    reader = InMemoryMetricReader()
    register_feed_metrics(MeterProvider(metric_readers=[reader]).get_meter("t"), stream)
    trade = {
        "type": "trade",
        "symbol": "X",
        "timestamp": TS,
        "price": "1",
        "qty": "1",
        "side": "buy",
        "is_buyer_maker": False,
    }

    await bus.nc.close()  # NATS will not take them: the one loss left, counted
    await stream.deliver([{**trade, "id": i} for i in range(3)] + [{**trade, "id": 9, "price": "NaN"}])
    points = _points(reader)

    assert points["md.events.dropped"] == [
        (3, {"type": "trade", "exchange": "stub", "symbol": "X", "reason": "publish_failed"})
    ]
    assert points["md.events.rejected"] == [
        (1, {"type": "trade", "exchange": "stub", "symbol": "X", "reason": "nan_price"})
    ]
    assert (3, {"type": "trade", "exchange": "stub", "symbol": "X"}) in points["md.events.received"]
