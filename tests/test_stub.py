from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from schemas import DepthUpdate, TradeTick
from services.connector_feed.connector import Delivered
from services.connector_feed.events import Depth, Trade
from services.connector_feed.stub import BATCH, StubbedConnector, StubSettings


def _settings(**overrides: Any) -> StubSettings:
    values: dict[str, Any] = {
        "stub_seed": 7,
        "stub_trades_per_s": 0,
        "stub_depth_per_s": 0,
        "symbols": "BTCUSDT,ETHUSDT",
    }
    values.update(overrides)
    return StubSettings(**values)


def _events(stub: StubbedConnector, n: int) -> list[Trade | Depth]:
    """``n`` events as the stub hands them over, unthrottled (``elapsed`` far ahead)."""
    events: list[Trade | Depth] = []
    while len(events) < n:
        batch = stub.due(1e9, 1_700_000_000_000_000_000)
        assert 0 < len(batch) <= BATCH
        events.extend(e for e in batch if isinstance(e, Trade | Depth))
    return events[:n]


class Sink:
    """Collects what a connector delivers (the feed's side of the seam)."""

    def __init__(self) -> None:
        self.batches: list[list[Delivered]] = []

    async def deliver(self, batch: Sequence[Delivered]) -> None:
        self.batches.append(list(batch))

    def put(self, batch: Sequence[Delivered]) -> bool:
        self.batches.append(list(batch))
        return True

    async def room(self) -> None:
        return None


def test_health_has_the_seed_shape() -> None:
    stub = StubbedConnector(_settings())

    assert stub.health() == {
        "connected": False,
        "subscribed_trades": True,
        "subscribed_depth": True,
        "event_counter": 0,
    }
    assert stub.instruments() == ["BTCUSDT", "ETHUSDT"]


def test_generated_events_are_valid_contracts() -> None:
    stub = StubbedConnector(_settings(stub_swing_bps=0))

    events = _events(stub, 400)

    trades = [e for e in events if isinstance(e, Trade)]
    depth = [e for e in events if isinstance(e, Depth)]
    assert len(trades) == len(depth) == 200
    for event in depth:
        contract = DepthUpdate.model_validate_json(event.wire())  # the bytes are a valid contract
        assert contract.is_snapshot and len(contract.bids) == len(contract.asks) == 10
        assert max(p for p, _ in contract.bids) < min(p for p, _ in contract.asks)
    for trade in trades:
        assert TradeTick.model_validate_json(trade.wire()).to_json() == trade.wire()
    btc = [t for t in trades if t.symbol == "BTCUSDT"]
    assert [t.trade_id for t in btc] == list(range(1, 101))
    prices = [Decimal(t.price) for t in btc]
    assert all(abs(b - a) <= Decimal("0.01") for a, b in itertools.pairwise(prices))  # a random walk


def test_the_price_swings_by_stub_swing_bps_over_one_period() -> None:
    stub = StubbedConnector(_settings(symbols="BTCUSDT", stub_trades_per_s=20, stub_swing_period_s=30))
    trades: list[Trade] = []
    while len(trades) < 600:  # one cycle: 30 s of trades at 20 a second
        trades.extend(e for e in stub.due(1e9, 1) if isinstance(e, Trade))
    prices = [Decimal(t.price) for t in trades[:600]]

    start = Decimal("50000.00")
    top, bottom = (max(prices) - start) / start * 10_000, (min(prices) - start) / start * 10_000
    assert Decimal(39) < top < Decimal(41) and Decimal(-41) < bottom < Decimal(-39)  # 40 bp each way
    assert prices.index(max(prices)) < prices.index(min(prices))  # up first, then down


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    def values(seed: int) -> list[tuple[Any, ...]]:
        stub = StubbedConnector(_settings(stub_seed=seed))
        return [
            (e.symbol, getattr(e, "price", None), getattr(e, "qty", None), getattr(e, "bids", None))
            for e in _events(stub, 200)
        ]

    assert values(1) == values(1)
    assert values(1) != values(2)


def test_rates_are_per_symbol_and_respected() -> None:
    stub = StubbedConnector(_settings(stub_trades_per_s=100, stub_depth_per_s=10))

    assert stub.due(0.0, 1) == []  # nothing is due at the start
    first_second = stub.due(1.0, 1)  # 100 trades and 10 depth per symbol by t = 1 s
    while more := stub.due(1.0, 1):
        first_second.extend(more)

    trades = [e for e in first_second if isinstance(e, Trade)]
    depth = [e for e in first_second if isinstance(e, Depth)]
    assert len(trades) == 200 and len(depth) == 20
    assert {t.symbol for t in trades} == {"BTCUSDT", "ETHUSDT"}


async def test_a_throttled_stub_wakes_when_data_is_due_and_hands_over_each_event() -> None:
    stub = StubbedConnector(_settings(stub_trades_per_s=50, stub_depth_per_s=0.001, symbols="BTCUSDT"))
    sink = Sink()

    task = asyncio.create_task(stub.run(sink))
    started = time.monotonic()
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    elapsed = time.monotonic() - started

    delivered = [e for batch in sink.batches for e in batch]
    assert abs(len(delivered) - 50 * elapsed) <= 3  # ~50 trades a second, no more, no less
    assert stub.health()["event_counter"] == len(delivered)
    assert all(len(batch) == 1 for batch in sink.batches)  # paced: one message, one event


async def test_a_fast_paced_stub_stamps_each_event_when_it_makes_it() -> None:
    """At 20k events/s a wake-up (1-2 ms apart) finds dozens due: each is still made, stamped and
    handed over on its own, so none waits, stamped, for the making of the others."""
    stub = StubbedConnector(_settings(stub_trades_per_s=10_000, stub_depth_per_s=10_000, symbols="BTCUSDT"))
    sink = Sink()

    task = asyncio.create_task(stub.run(sink))
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    stamps = [e.ts_recv for batch in sink.batches for e in batch if isinstance(e, Trade | Depth)]
    assert len(stamps) > 1000 and all(len(batch) == 1 for batch in sink.batches)
    assert stamps == sorted(stamps)
    wakes = 0.3 / 0.001  # at most one wake-up a millisecond (MIN_SLEEP_S)
    assert len(set(stamps)) > 3 * wakes  # stamped one by one, not one stamp a wake-up
