"""One strategy behind its own bounded queue and task.

The NATS callback only ``offer``s events (O(1)); when the queue is full the oldest event is dropped
and counted. An exception in the strategy is counted and logged (sampled) and the next event is
processed: one faulty strategy never takes the engine down. A signal caused by a traced event is
published with a PRODUCER span ``publish signals.{strategy}.{symbol}`` in the event's trace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context

from schemas import DepthUpdate, Signal, TradeTick, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import get_logger
from services.strategy_engine.strategy import Strategy

log = get_logger("strategy_engine")

MarketEvent = TradeTick | DepthUpdate
_BATCH = 256


class StrategyRunner:
    def __init__(
        self, strategy: Strategy, bus: Bus, queue_size: int, tracer: trace.Tracer | None = None
    ) -> None:
        self.strategy = strategy
        self.bus = bus
        self.queue_size = queue_size
        self.tracer = tracer or trace.NoOpTracer()
        self._items: deque[tuple[MarketEvent, Context | None]] = deque()
        self._ready = asyncio.Event()
        self.queued = {"trade": 0, "depth": 0}
        self.processed = 0
        self.signals = 0
        self.signals_by_symbol: dict[str, int] = {}
        self.errors = 0
        self.dropped = 0
        self.last_drop_monotonic: float | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def queue_len(self) -> int:
        return len(self._items)

    def offer(self, event: MarketEvent, context: Context | None = None) -> None:
        items = self._items
        if len(items) >= self.queue_size:
            self._count_out(items.popleft()[0])
            self.dropped += 1
            self.last_drop_monotonic = time.monotonic()
        items.append((event, context))
        self.queued["trade" if type(event) is TradeTick else "depth"] += 1
        self._ready.set()

    def _count_out(self, event: MarketEvent) -> None:
        self.queued["trade" if type(event) is TradeTick else "depth"] -= 1

    async def run(self) -> None:
        strategy, items = self.strategy, self._items
        while True:
            if not items:
                self._ready.clear()
                await self._ready.wait()
            # A bounded batch, then yield: the NATS callbacks must keep running.
            for _ in range(min(len(items), _BATCH)):
                event, context = items.popleft()
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
                    await self.publish(signal, context)
            await asyncio.sleep(0)

    async def publish(self, signal: Signal, context: Context | None = None) -> None:
        subject = subjects.signals(signal.strategy, signal.symbol)
        payload = signal.to_json()
        try:
            if context is None:
                await self.bus.publish(subject, payload)
            else:
                headers: dict[str, str] = {}
                span = messaging.producer(
                    self.tracer,
                    subject,
                    subjects.SIGNALS_TEMPLATE,
                    len(payload),
                    context,
                    headers,
                    symbol=signal.symbol,
                    strategy=signal.strategy,
                )
                try:
                    await self.bus.publish(subject, payload, headers)
                    with trace.use_span(span):  # the log line below carries this span's ids
                        self._published(signal)
                finally:
                    span.end()
                return
        except Exception as error:
            self._failed(error)
            return
        self._published(signal)

    def _published(self, signal: Signal) -> None:
        self.signals += 1
        self.signals_by_symbol[signal.symbol] = self.signals_by_symbol.get(signal.symbol, 0) + 1
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
            "queue_size": len(self._items),
            "last_error": self.last_error,
        }
