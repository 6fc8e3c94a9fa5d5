from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from services.connector_feed.normalize import Normalizer
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubbedConnector


def _settings(**overrides: Any) -> FeedSettings:
    values: dict[str, Any] = {
        "data_source": "hft_connector",
        "stub_seed": 7,
        "stub_trades_per_s": 0,
        "stub_depth_per_s": 0,
        "symbols": "BTCUSDT,ETHUSDT",
    }
    values.update(overrides)
    return FeedSettings(**values)


async def _drain(stub: StubbedConnector, n: int) -> list[dict[str, Any]]:
    events = []
    for _ in range(n):
        event = await stub.next_event()
        assert event is not None
        assert isinstance(event, dict)
        events.append(event)
    return events


async def test_lifecycle_connect_disconnect() -> None:
    stub = StubbedConnector(_settings())

    assert not await stub.is_connected()
    await stub.connect()
    assert await stub.is_connected()
    assert stub.get_health_status() == {
        "connected": True,
        "subscribed_trades": False,
        "subscribed_depth": False,
        "event_counter": 0,
    }
    await stub.disconnect()
    assert not await stub.is_connected()
    with pytest.raises(ConnectionError):
        await stub.next_event()


async def test_nothing_is_generated_before_subscribing() -> None:
    stub = StubbedConnector(_settings())
    await stub.connect()

    assert await stub.next_event() is None


async def test_subscriptions_choose_kinds_and_symbols() -> None:
    stub = StubbedConnector(_settings())
    await stub.connect()
    await stub.subscribe_trades("ETHUSDT")

    events = await _drain(stub, 50)

    assert {(e["type"], e["symbol"]) for e in events} == {("trade", "ETHUSDT")}
    assert stub.get_health_status()["subscribed_trades"] is True
    assert stub.get_health_status()["event_counter"] == 50
    with pytest.raises(ValueError, match="does not serve"):
        await stub.subscribe_depth("DOGEUSDT")


async def test_generated_events_are_valid_and_well_formed() -> None:
    stub = StubbedConnector(_settings())
    await stub.connect()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        await stub.subscribe_trades(symbol)
        await stub.subscribe_depth(symbol)
    normalizer = Normalizer(stub.exchange, ["BTCUSDT", "ETHUSDT"])

    events = await _drain(stub, 400)

    kinds = [e["type"] for e in events]
    assert kinds.count("trade") == kinds.count("depth") == 200
    for event in events:
        normalized = normalizer.normalize(event, 1_700_000_000_000_000_000)  # raises if invalid
        if event["type"] == "depth":
            assert len(event["bids"]) == len(event["asks"]) == 10
            contract = normalized.to_contract()
            assert contract.is_snapshot  # type: ignore[union-attr]
            assert max(p for p, _ in contract.bids) < min(p for p, _ in contract.asks)  # type: ignore[union-attr]
    trade_ids = [e["id"] for e in events if e["type"] == "trade" and e["symbol"] == "BTCUSDT"]
    assert trade_ids == list(range(1, 101))
    prices = [Decimal(e["price"]) for e in events if e["type"] == "trade" and e["symbol"] == "BTCUSDT"]
    assert all(abs(b - a) <= Decimal("0.01") for a, b in itertools.pairwise(prices))  # a random walk


async def test_same_seed_same_stream_other_seed_other_stream() -> None:
    async def values(seed: int) -> list[tuple[Any, ...]]:
        stub = StubbedConnector(_settings(stub_seed=seed))
        await stub.connect()
        await stub.subscribe_trades("BTCUSDT")
        await stub.subscribe_depth("BTCUSDT")
        return [
            tuple((k, str(v)) for k, v in sorted(e.items()) if k != "timestamp")
            for e in await _drain(stub, 200)
        ]

    assert await values(1) == await values(1)
    assert await values(1) != await values(2)


async def test_rates_are_respected() -> None:
    stub = StubbedConnector(_settings(stub_trades_per_s=1000, stub_depth_per_s=0.001, symbols="BTCUSDT"))
    await stub.connect()
    await stub.subscribe_trades("BTCUSDT")
    await stub.subscribe_depth("BTCUSDT")

    burst = []
    while (event := await stub.next_event()) is not None:
        burst.append(event)

    # Right after connect only the first of each kind is due (a depth one, at most one trade).
    assert len(burst) <= 3
