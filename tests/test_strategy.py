from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import pytest

from schemas import Signal, TradeTick
from schemas.wire import TradeMsg, decode_trade
from services.strategy_engine.runner import StrategyRunner
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.strategy import Strategy, load_strategies
from services.strategy_engine.vwap import VwapDeviation
from tests.helpers import eventually

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _tick(i: int, price: str, qty: str = "1", symbol: str = "BTCUSDT", ts: int | None = None) -> TradeMsg:
    return decode_trade(_contract(i, price, qty, symbol, ts).to_json())


def _contract(i: int, price: str, qty: str, symbol: str, ts: int | None) -> TradeTick:
    return TradeTick(
        exchange="stub",
        symbol=symbol,
        trade_id=i,
        price=Decimal(price),
        qty=Decimal(qty),
        side="buy",
        is_buyer_maker=False,
        ts_event=T0 + i * S if ts is None else ts,
        ts_recv=T0,
    )


def _settings(**overrides: object) -> StrategySettings:
    values: dict[str, object] = {"vwap_window_s": 60, "vwap_threshold_bps": 10, "vwap_min_trades": 5}
    values.update(overrides)
    return StrategySettings(**values)  # type: ignore[arg-type]


def test_vwap_signals_on_changes_of_view_only() -> None:
    strategy = VwapDeviation(_settings())
    prices = ["100"] * 5 + ["100.2", "100.3", "100.1", "100", "99.8", "99.7", "100"]

    signals = [s for i, p in enumerate(prices) for s in strategy.on_trade(_tick(i, p))]

    assert [(s.side, s.ts_event) for s in signals] == [
        ("sell", T0 + 5 * S),  # 100.2 vs VWAP 100.0333: +16.7 bps
        ("flat", T0 + 7 * S),  # 100.1 vs VWAP 100.075: +2.5 bps, inside half the threshold
        ("buy", T0 + 9 * S),  # 99.8 vs 100.04: -24 bps (100 at i=8 was -6.7 bps: hysteresis, no signal)
        ("flat", T0 + 11 * S),  # 100 vs 100.0083
    ]
    first = signals[0]
    assert first.strategy == "vwap" and first.symbol == "BTCUSDT"
    assert first.strength == Decimal("1.6661")  # (100.2 - 100.0333) / 100.0333 = 16.661 bps; / 10 bps
    assert "VWAP 100.0333333333" in first.reason


def test_vwap_needs_min_trades_and_forgets_old_trades() -> None:
    strategy = VwapDeviation(_settings(vwap_window_s=10, vwap_min_trades=3))

    early = list(strategy.on_trade(_tick(0, "100"))) + list(strategy.on_trade(_tick(1, "101")))
    assert early == []  # fewer than 3 trades
    for i in range(2, 5):
        strategy.on_trade(_tick(i, "100"))
    # 100 s later the window only holds the new trades: VWAP = 200, no deviation.
    late = [s for i in range(100, 104) for s in strategy.on_trade(_tick(i, "200"))]

    assert late == [] or late[-1].side == "flat"


def test_vwap_keeps_symbols_apart() -> None:
    strategy = VwapDeviation(_settings(vwap_min_trades=2))
    for i in range(3):
        strategy.on_trade(_tick(i, "100", symbol="A"))
        strategy.on_trade(_tick(i, "5", symbol="B"))

    signals = strategy.on_trade(_tick(4, "5", symbol="B"))

    assert signals == ()


class Exploding(Strategy):
    name = "exploding"

    def on_trade(self, tick: TradeMsg) -> Sequence[Signal]:
        if tick.trade_id % 2:
            raise RuntimeError("boom")
        return ()


def test_load_strategies_by_name_and_by_import_path() -> None:
    loaded = load_strategies(["vwap", "tests.test_strategy:Exploding"], _settings())

    assert [s.name for s in loaded] == ["vwap", "exploding"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown strategy"),
        ("tests.nope:X", "cannot import"),
        ("tests.test_strategy:_tick", "not a Strategy"),
    ],
)
def test_load_strategies_rejects_unknown(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_strategies([spec], _settings())


async def test_runner_isolates_a_raising_strategy_and_drops_oldest_when_full() -> None:
    runner = StrategyRunner(Exploding(_settings()), bus=None, queue_size=4)  # type: ignore[arg-type]
    for i in range(6):
        runner.offer(_tick(i, "1"))
    assert runner.dropped == 2
    assert runner.queued == {"trade": 4, "depth": 0}

    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.processed == 4)
    task.cancel()

    assert runner.errors == 2  # ids 3 and 5 raised; the runner kept going
    assert runner.health()["last_error"] == "raised: RuntimeError('boom')"
    assert runner.queued == {"trade": 0, "depth": 0}
