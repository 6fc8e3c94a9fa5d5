"""One strategy behind its own bounded queue and task.

The NATS callback only ``offer``s events (O(1)); when the queue is full the oldest event is dropped
and counted. An exception in the strategy is counted and logged (sampled) and the next event is
processed: one faulty strategy never takes the engine down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from schemas import DepthUpdate, Signal, TradeTick, subjects
from services.common.bus import Bus
from services.common.logging import get_logger
from services.strategy_engine.strategy import Strategy

log = get_logger("strategy_engine")

MarketEvent = TradeTick | DepthUpdate


class StrategyRunner:
    def __init__(self, strategy: Strategy, bus: Bus, queue_size: int) -> None:
        self.strategy = strategy
        self.bus = bus
        self.queue: asyncio.Queue[MarketEvent] = asyncio.Queue(maxsize=queue_size)
        self.queued = {"trade": 0, "depth": 0}
        self.processed = 0
        self.signals = 0
        self.errors = 0
        self.dropped = 0
        self.last_drop_monotonic: float | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.strategy.name

    def offer(self, event: MarketEvent) -> None:
        if self.queue.full():
            self._count_out(self.queue.get_nowait())
            self.dropped += 1
            self.last_drop_monotonic = time.monotonic()
        self.queue.put_nowait(event)
        self.queued["trade" if type(event) is TradeTick else "depth"] += 1

    def _count_out(self, event: MarketEvent) -> None:
        self.queued["trade" if type(event) is TradeTick else "depth"] -= 1

    async def run(self) -> None:
        strategy, queue = self.strategy, self.queue
        while True:
            event = await queue.get()
            self._count_out(event)
            try:
                signals: Sequence[Signal] = (
                    strategy.on_trade(event) if type(event) is TradeTick else strategy.on_depth(event)  # type: ignore[arg-type]
                )
            except Exception as error:  # per-message boundary: isolate the strategy's bug
                self._failed(error)
                continue
            finally:
                self.processed += 1
            for signal in signals:
                await self.publish(signal)

    async def publish(self, signal: Signal) -> None:
        try:
            await self.bus.publish(subjects.signals(signal.strategy, signal.symbol), signal.to_json())
        except Exception as error:
            self._failed(error)
            return
        self.signals += 1
        log.info(
            "signal",
            strategy=signal.strategy,
            symbol=signal.symbol,
            side=signal.side,
            strength=str(signal.strength),
            reason=signal.reason,
        )

    def _failed(self, error: Exception) -> None:
        self.errors += 1
        self.last_error = repr(error)
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.error("strategy_error", strategy=self.name, errors=self.errors, error=repr(error))

    def health(self) -> dict[str, object]:
        return {
            "processed": self.processed,
            "signals": self.signals,
            "errors": self.errors,
            "dropped": self.dropped,
            "queue_size": self.queue.qsize(),
            "last_error": self.last_error,
        }
