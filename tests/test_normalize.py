from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from schemas import TradeTick
from services.connector_feed.events import Depth, Trade
from services.connector_feed.normalize import EventRejected, Normalizer, timestamp_ns

RECV = 1_700_000_000_123_456_789
MS = 1_700_000_000_123
NS = MS * 1_000_000


def _trade(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "trade",
        "timestamp": MS,
        "price": 100.5,
        "qty": 0.25,
        "side": "buy",
        "is_buyer_maker": False,
        "id": 12345,
    }
    event.update(overrides)
    return event


def _depth(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "depth",
        "timestamp": MS,
        "bids": [(100.0, 1.0), (99.9, 2.0)],
        "asks": [(100.1, 1.0), (100.2, 2.0)],
        "last_update_id": 42,
    }
    event.update(overrides)
    return event


@pytest.fixture
def normalizer() -> Normalizer:
    return Normalizer("stub", ["BTCUSDT"])


@pytest.mark.parametrize(
    ("stamp", "expected_ns"),
    [
        (MS, NS),  # int milliseconds (the seed's format)
        (MS * 1000, NS),  # microseconds
        (NS, NS),  # nanoseconds
        (datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC), NS),
        (datetime(2023, 11, 15, 0, 13, 20, 123000, tzinfo=timezone(timedelta(hours=2))), NS),
        (datetime(2023, 11, 14, 22, 13, 20, 123000), NS),  # naive: UTC
    ],
)
def test_trade_timestamp_formats(normalizer: Normalizer, stamp: object, expected_ns: int) -> None:
    trade = normalizer.normalize(_trade(timestamp=stamp), RECV)

    assert isinstance(trade, Trade)
    assert trade.ts_event == expected_ns
    assert trade.ts_recv == RECV


def test_depth_timestamp_datetime(normalizer: Normalizer) -> None:
    depth = normalizer.normalize(
        _depth(timestamp=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)), RECV
    )

    assert isinstance(depth, Depth)
    assert depth.ts_event == NS


def test_seed_trade_becomes_a_contract_with_exact_decimals(normalizer: Normalizer) -> None:
    trade = normalizer.normalize(_trade(price=0.1 + 0.2, qty="0.00000001"), RECV)

    tick = trade.to_contract()
    assert isinstance(tick, TradeTick)
    assert tick.price == Decimal("0.30000000000000004")  # shortest repr, not Decimal(float)'s 55 digits
    assert tick.qty == Decimal("0.00000001")
    assert (tick.exchange, tick.symbol, tick.trade_id, tick.side) == ("stub", "BTCUSDT", 12345, "buy")


def test_seed_depth_defaults_to_a_snapshot(normalizer: Normalizer) -> None:
    depth = normalizer.normalize(_depth(), RECV)

    assert isinstance(depth, Depth)
    assert depth.is_snapshot
    assert depth.bids == [("100.0", "1.0"), ("99.9", "2.0")]
    assert depth.last_update_id == 42
    assert depth.first_update_id is None


def test_depth_delta_keeps_its_ids(normalizer: Normalizer) -> None:
    depth = normalizer.normalize(
        _depth(is_snapshot=False, first_update_id=40, prev_last_update_id=39, bids=[("100.0", "0")]), RECV
    )

    assert isinstance(depth, Depth)
    assert (depth.first_update_id, depth.last_update_id, depth.prev_last_update_id) == (40, 42, 39)
    assert depth.bids == [("100.0", "0")]


def test_symbol_and_exchange_from_the_event() -> None:
    multi = Normalizer("stub", ["BTCUSDT", "ETHUSDT"])

    trade = multi.normalize(_trade(symbol="ETHUSDT", exchange="binance"), RECV)

    assert isinstance(trade, Trade)
    assert (trade.exchange, trade.symbol) == ("binance", "ETHUSDT")
    with pytest.raises(EventRejected) as rejected:
        multi.normalize(_trade(), RECV)
    assert rejected.value.reason == "missing_symbol"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_trade(price=math.nan), "nan_price"),
        (_trade(price="NaN"), "nan_price"),
        (_trade(price=math.inf), "infinite_price"),
        (_trade(price="-Infinity"), "infinite_price"),
        (_trade(price=-1.0), "negative_price"),
        (_trade(price=0), "non_positive_price"),
        (_trade(price="0.000"), "non_positive_price"),
        (_trade(qty=-0.5), "negative_qty"),
        (_trade(qty=0.0), "non_positive_qty"),
        (_trade(price="abc"), "invalid_price"),
        (_trade(price=None), "wrong_type"),
        (_trade(price=[1]), "wrong_type"),
        (_trade(price=True), "wrong_type"),
        (_trade(id="12345"), "wrong_type"),
        (_trade(is_buyer_maker="no"), "wrong_type"),
        (_trade(side="long"), "invalid_side"),
        (_trade(side="buy", is_buyer_maker=True), "side_contradiction"),
        (_trade(side="sell", is_buyer_maker=False), "side_contradiction"),
        (_trade(timestamp=1.7e12), "wrong_type"),
        (_trade(timestamp=1_700_000_000), "invalid_timestamp"),  # seconds are ambiguous: refused
        (_trade(timestamp="2024-01-01"), "wrong_type"),
        (_trade(symbol="BTC.USDT"), "invalid_symbol"),
        (_trade(exchange="Bad Exchange"), "invalid_exchange"),
        ({k: v for k, v in _trade().items() if k != "price"}, "missing_field"),
        ({k: v for k, v in _trade().items() if k != "id"}, "missing_field"),
        ({k: v for k, v in _trade().items() if k != "timestamp"}, "missing_field"),
        (_trade(type="quote"), "unknown_type"),
        ({"price": 1}, "unknown_type"),
        (["trade"], "not_a_dict"),
        (_depth(bids="nope"), "wrong_type"),
        (_depth(bids=[(100.0,)]), "invalid_level"),
        (_depth(asks=[(100.1, -1.0)]), "negative_qty"),
        (_depth(asks=[(math.nan, 1.0)]), "nan_price"),
        (_depth(bids=[(0, 1.0)]), "non_positive_price"),
        (_depth(last_update_id="42"), "wrong_type"),
        (_depth(is_snapshot="yes"), "wrong_type"),
        (_depth(is_snapshot=False), "missing_field"),  # a delta needs first_update_id
        (_depth(is_snapshot=False, first_update_id=50), "invalid_update_ids"),
        (_depth(bids=[(101.0, 1.0)]), "crossed_book"),
        ({k: v for k, v in _depth().items() if k != "asks"}, "missing_field"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(normalizer: Normalizer, event: object, reason: str) -> None:
    with pytest.raises(EventRejected) as rejected:
        normalizer.normalize(event, RECV)

    assert rejected.value.reason == reason


def test_contract_instances_pass_through_unchanged(normalizer: Normalizer) -> None:
    tick = TradeTick(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=1,
        price=Decimal("1.10"),
        qty=Decimal(2),
        side="buy",
        is_buyer_maker=False,
        ts_event=5,
        ts_recv=6,
    )

    event = normalizer.normalize(tick, RECV)

    assert isinstance(event, Trade)
    assert event.wire() == tick.to_json()


def test_timestamp_rejects_bool() -> None:
    with pytest.raises(EventRejected):
        timestamp_ns(True)
