"""Built-in strategy ``vwap``: mean reversion against a rolling VWAP.

A trade more than VWAP_THRESHOLD_BPS above the VWAP of the last VWAP_WINDOW_S seconds signals
``sell`` (rich), that far below signals ``buy`` (cheap); back within half the threshold signals
``flat``. Signals are sent on changes of view only, not on every trade. ``strength`` is the
deviation in units of the threshold.

The view is decided per trade against the exact VWAP, with integer comparisons
(``RollingVwap.fraction`` and the price's coefficient: no ``Decimal``, no division per trade); the
deviation as a ``Decimal`` (against the VWAP rounded to 1e-10, as shown) is computed only for the
signal that a change of view sends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Literal

from schemas import Signal
from schemas.wire import TradeMsg
from services.common.vwap import POW10, RollingVwap, scaled
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
        coefficient, scale = scaled(self.threshold)
        #: bps, and the threshold's own scale (``_view_of``)
        self._lhs_factor = 10 ** (4 + scale)
        self._threshold_coefficient = coefficient
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
        vwap.add(tick.ts_event, tick.price, tick.qty)
        if len(vwap) < self.min_trades:
            return ()
        average = vwap.fraction()
        if average is None:
            return ()
        current = self._view.get(tick.symbol, "flat")
        view = self._view_of(tick.price, average, current)
        if view == current:
            return ()
        self._view[tick.symbol] = view
        return (self._signal(tick, view, vwap),)

    def _view_of(self, price: str, average: tuple[int, int], current: View) -> View:
        """The view for a trade at ``price`` against the VWAP ``n / d``, exactly: deviation_bps =
        (price - vwap) / vwap * 10**4 compared with the threshold t = c / 10**s is, for the price
        p / 10**e, (p * d - n * 10**e) * 10**(4 + s) against c * n * 10**e - all integers."""
        coefficient, scale = scaled(price)
        numerator, denominator = average
        shifted = numerator * POW10[scale]
        difference = (coefficient * denominator - shifted) * self._lhs_factor
        bound = self._threshold_coefficient * shifted
        if difference >= bound:
            return "sell"
        if difference <= -bound:
            return "buy"
        if 2 * abs(difference) <= bound:
            return "flat"
        return current  # hysteresis band: keep the view

    def _signal(self, tick: TradeMsg, view: View, vwap: RollingVwap) -> Signal:
        price, average = Decimal(tick.price), vwap.value
        assert average is not None  # the view was decided against it
        deviation_bps = (price - average) / average * _BPS
        return Signal(
            strategy=self.name,
            symbol=tick.symbol,
            side=view,
            strength=(abs(deviation_bps) / self.threshold).quantize(_STRENGTH, context=_WIDE),
            reason=f"price {tick.price} is {deviation_bps:.2f} bps from the "
            f"{self.window_ns / 1e9:g}s VWAP {average} ({len(vwap)} trades)",
            ts_event=tick.ts_event,
            ts=time.time_ns(),
        )
