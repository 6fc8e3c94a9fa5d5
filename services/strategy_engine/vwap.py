"""Built-in strategy ``vwap``: mean reversion against a rolling VWAP.

A trade more than VWAP_THRESHOLD_BPS above the VWAP of the last VWAP_WINDOW_S seconds signals
``sell`` (rich), that far below signals ``buy`` (cheap); back within half the threshold signals
``flat``. Signals are sent on changes of view only, not on every trade. ``strength`` is the
deviation in units of the threshold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Literal

from schemas import Signal
from schemas.wire import TradeMsg
from services.common.vwap import RollingVwap
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.strategy import Strategy

View = Literal["buy", "sell", "flat"]
_BPS = Decimal(10_000)
_STRENGTH = Decimal("0.0001")
#: Wide enough to quantize any deviation between two rule-valid (40-digit) prices.
_WIDE = Context(prec=200)


class VwapDeviation(Strategy):
    name = "vwap"

    def __init__(self, settings: StrategySettings) -> None:
        super().__init__(settings)
        self.window_ns = int(settings.vwap_window_s * 1e9)
        self.threshold = Decimal(str(settings.vwap_threshold_bps))
        self.min_trades = settings.vwap_min_trades
        self._vwap: dict[str, RollingVwap] = {}
        self._view: dict[str, View] = {}

    def problems(self) -> list[str]:
        now = time.monotonic()
        return [
            f"{symbol} VWAP repaired: {vwap.problem[0]}"
            for symbol, vwap in self._vwap.items()
            if vwap.problem is not None and now - vwap.problem[1] <= 60
        ]

    def on_trade(self, tick: TradeMsg) -> Sequence[Signal]:
        vwap = self._vwap.get(tick.symbol)
        if vwap is None:
            vwap = self._vwap[tick.symbol] = RollingVwap(self.window_ns)
        price = Decimal(tick.price)
        vwap.add(tick.ts_event, price, Decimal(tick.qty))
        average = vwap.value
        if average is None or len(vwap) < self.min_trades:
            return ()
        deviation_bps = (price - average) / average * _BPS
        current = self._view.get(tick.symbol, "flat")
        if deviation_bps >= self.threshold:
            view: View = "sell"
        elif deviation_bps <= -self.threshold:
            view = "buy"
        elif abs(deviation_bps) <= self.threshold / 2:
            view = "flat"
        else:
            view = current  # hysteresis band: keep the view
        if view == current:
            return ()
        self._view[tick.symbol] = view
        return (
            Signal(
                strategy=self.name,
                symbol=tick.symbol,
                side=view,
                strength=(abs(deviation_bps) / self.threshold).quantize(_STRENGTH, context=_WIDE),
                reason=f"price {tick.price} is {deviation_bps:.2f} bps from the "
                f"{self.window_ns / 1e9:g}s VWAP {average} ({len(vwap)} trades)",
                ts_event=tick.ts_event,
                ts=time.time_ns(),
            ),
        )
