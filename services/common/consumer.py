"""Subscribing to market data: ``md.<SYMBOL>.trades`` / ``.depth`` -> validated contracts.

Shared by strategy_engine and context. NATS runs one subscription's callbacks one at a time, so
the callback only decodes and hands the contract on (to a bounded queue or an O(1) update). A
message that is not a valid contract is counted and logged (sampled), never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from pydantic import ValidationError

from schemas import DepthUpdate, TradeTick, subjects
from services.common.bus import Bus
from services.common.logging import get_logger
from services.common.rates import RollingCounter

log = get_logger(__name__)


class MarketDataSubscriber:
    def __init__(
        self,
        bus: Bus,
        symbols: list[str],
        on_trade: Callable[[TradeTick], None],
        on_depth: Callable[[DepthUpdate], None],
        pressure: Callable[[], bool] | None = None,
    ) -> None:
        self.bus = bus
        self.symbols = symbols
        self._on_trade = on_trade
        self._on_depth = on_depth
        # When downstream queues fill up, the callback yields to let their tasks catch up, so a
        # burst waits in NATS's pending buffer instead of being dropped downstream.
        self._pressure = pressure
        self.consumed = {"trade": 0, "depth": 0}
        self.invalid = 0
        self.last_message_monotonic: float | None = None
        self.trade_rate = RollingCounter()
        self.depth_rate = RollingCounter()

    async def start(self) -> None:
        for symbol in self.symbols:
            await self.bus.subscribe(subjects.trades(symbol), self._trade_msg)
            await self.bus.subscribe(subjects.depth(symbol), self._depth_msg)
        await self.bus.nc.flush()

    async def _trade_msg(self, msg: Msg) -> None:
        try:
            tick = TradeTick.model_validate_json(msg.data)
        except ValidationError as error:
            self._invalid(msg, error)
            return
        self.consumed["trade"] += 1
        self.last_message_monotonic = now = time.monotonic()
        self.trade_rate.add(1, now)
        self._on_trade(tick)
        if self._pressure is not None and self._pressure():
            await asyncio.sleep(0)

    async def _depth_msg(self, msg: Msg) -> None:
        try:
            update = DepthUpdate.model_validate_json(msg.data)
        except ValidationError as error:
            self._invalid(msg, error)
            return
        self.consumed["depth"] += 1
        self.last_message_monotonic = now = time.monotonic()
        self.depth_rate.add(1, now)
        self._on_depth(update)
        if self._pressure is not None and self._pressure():
            await asyncio.sleep(0)

    def _invalid(self, msg: Msg, error: ValidationError) -> None:
        self.invalid += 1
        if self.invalid <= 10 or self.invalid % 1000 == 0:  # a log sample, not a line per bad message
            log.warning(
                "invalid_message",
                subject=msg.subject,
                invalid=self.invalid,
                error=error.errors(include_url=False)[:3],
                size=len(msg.data),
            )

    def metrics(self, queue_sizes: tuple[int, int] = (0, 0)) -> dict[str, dict[str, float | int]]:
        """The seed's metrics shape for what this service consumes."""
        return {
            "trades": {
                "per_minute_count": self.trade_rate.count(),
                "per_second_rate": round(self.trade_rate.rate(), 3),
                "queue_size": queue_sizes[0],
            },
            "depth": {
                "per_minute_count": self.depth_rate.count(),
                "per_second_rate": round(self.depth_rate.rate(), 3),
                "queue_size": queue_sizes[1],
            },
        }
