"""One strategy behind its own bounded queue and task, isolated from the engine and the others.

The NATS handler only ``offer``s events (O(1): an append; nothing is counted per event that can
be counted when asked); when the queue is full the oldest event is dropped and counted. The task
takes events in batches of up to ``_BATCH`` and yields between batches.

Each hook call is a per-message boundary: a strategy that raises, returns None or a wrong type,
yields something that is not a valid ``Signal`` of its own, or runs past STRATEGY_MAX_BLOCK_MS is
counted by kind (``failures`` in health, ``strategy.errors`` in metrics), logged as a sample,
reported by name in health - and the next event is processed. A signal caused by a traced event is
published with a PRODUCER span ``publish signals.{strategy}.{symbol}`` in the event's trace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import ValidationError

from schemas import Signal, rules, subjects
from schemas.wire import DepthMsg, TradeMsg
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import LogSampler, get_logger
from services.strategy_engine.strategy import Strategy

log = get_logger("strategy_engine")

MarketEvent = TradeMsg | DepthMsg
_monotonic = time.monotonic
_BATCH = 256
#: Signals taken from one hook call at most (a generator that never ends must not hang the engine).
MAX_SIGNALS_PER_EVENT = 100
FAILURE_KINDS = ("raised", "returned_none", "wrong_type", "invalid_signal", "too_many_signals")
#: Failures or blocks within this many seconds make health degraded.
RECENT_S = 60.0


class StrategyRunner:
    def __init__(
        self,
        strategy: Strategy,
        bus: Bus,
        queue_size: int,
        tracer: trace.Tracer | None = None,
        max_block_s: float = 0.05,
    ) -> None:
        self.strategy = strategy
        self.bus = bus
        self.queue_size = queue_size
        self.tracer = tracer or trace.NoOpTracer()
        self.max_block_s = max_block_s
        self._items: deque[tuple[MarketEvent, Context | None]] = deque()
        self._ready = asyncio.Event()
        self._waiting = False  # the task waits for _ready (offer sets it only then)
        self.processed = 0
        self.signals = 0
        self.signals_by_symbol: dict[str, int] = {}
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_KINDS, 0)
        self.publish_errors = 0
        self.dropped = 0
        self.last_drop_monotonic: float | None = None
        self.last_failure: tuple[str, str, float] | None = None  # kind, detail, monotonic time
        self.blocked = 0
        self.last_block: tuple[float, float] | None = None  # seconds, monotonic time
        #: (strategy, monotonic start) while a hook runs: read by the engine's watchdog thread.
        self.running_since: float | None = None
        self._log_sampler = LogSampler()

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def queue_len(self) -> int:
        return len(self._items)

    def pressed(self) -> bool:
        """At least half full: the NATS callback should let this task catch up."""
        return len(self._items) * 2 >= self.queue_size

    @property
    def queued(self) -> dict[str, int]:
        """Events waiting, by kind (counted when asked: O(queue))."""
        depth = sum(1 for event, _ in list(self._items) if type(event) is not TradeMsg)
        return {"trade": len(self._items) - depth, "depth": depth}

    def offer(self, event: MarketEvent, context: Context | None = None) -> None:
        items = self._items
        if len(items) >= self.queue_size:
            items.popleft()
            self.dropped += 1
            self.last_drop_monotonic = time.monotonic()
        items.append((event, context))
        if self._waiting:
            self._waiting = False
            self._ready.set()

    async def run(self) -> None:
        items, call = self._items, self.call
        while True:
            if not items:
                self._ready.clear()
                self._waiting = True
                await self._ready.wait()
            # A bounded batch, then yield: the NATS callbacks must keep running.
            for _ in range(min(len(items), _BATCH)):
                event, context = items.popleft()
                signals = call(event)
                if signals:
                    for signal in signals:
                        await self.publish(signal, context)
            await asyncio.sleep(0)

    def call(self, event: MarketEvent) -> Sequence[Signal]:
        """Run the strategy's hook on one event: its valid signals; anything else counted, never raised."""
        strategy = self.strategy
        started = self.running_since = _monotonic()
        try:
            result = strategy.on_trade(event) if type(event) is TradeMsg else strategy.on_depth(event)  # type: ignore[arg-type]
            if (type(result) is tuple or type(result) is list) and not result:
                return ()  # the common case: no signal
            return self._signals(result)
        except Exception as error:  # per-message boundary: isolate the strategy's bug
            self._failed("raised", rules.clip(repr(error), 300))
            return ()
        finally:
            self.running_since = None
            self.processed += 1
            elapsed = _monotonic() - started
            if elapsed > self.max_block_s:
                self._blocked(elapsed)

    def _signals(self, result: object) -> list[Signal]:
        if result is None:
            self._failed("returned_none", "the hook returned None instead of a sequence of signals")
            return []
        if isinstance(result, str | bytes | dict | Signal) or not isinstance(result, Iterable):
            self._failed(
                "wrong_type", f"the hook returned {type(result).__name__}, not a sequence of signals"
            )
            return []
        signals: list[Signal] = []
        for count, item in enumerate(result):  # a generator runs (and may raise) here
            if count == MAX_SIGNALS_PER_EVENT:
                self._failed("too_many_signals", f"more than {MAX_SIGNALS_PER_EVENT} signals for one event")
                break
            signal = self._valid(item)
            if signal is not None:
                signals.append(signal)
        return signals

    def _valid(self, item: object) -> Signal | None:
        if type(item) is not Signal:
            self._failed("invalid_signal", f"yielded {type(item).__name__}, not a Signal")
            return None
        if item.strategy != self.name:
            self._failed("invalid_signal", f"a signal of strategy {rules.preview(item.strategy)}")
            return None
        try:  # a model_construct()-ed signal skipped validation: it must still be a contract
            return Signal.model_validate(item.model_dump())
        except ValidationError as error:
            self._failed("invalid_signal", rules.clip(str(error), 300))
            return None

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
        except asyncio.CancelledError:
            raise
        except Exception as error:  # per-message boundary
            self.publish_errors += 1
            if self._log_sampler.allow("publish_failed") is not None:
                log.warning("signal_publish_failed", strategy=self.name, error=rules.clip(repr(error), 200))
            return
        self._published(signal)

    def _published(self, signal: Signal) -> None:
        self.signals += 1
        self.signals_by_symbol[signal.symbol] = self.signals_by_symbol.get(signal.symbol, 0) + 1
        if self._log_sampler.allow("signal") is not None:
            log.info(
                "signal",
                strategy=signal.strategy,
                symbol=signal.symbol,
                side=signal.side,
                strength=str(signal.strength),
                reason=signal.reason,
            )

    def _failed(self, kind: str, detail: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.last_failure = (kind, detail, time.monotonic())
        suppressed = self._log_sampler.allow(kind)
        if suppressed is not None:
            log.error(
                "strategy_error",
                strategy=self.name,
                kind=kind,
                error=detail,
                errors=self.errors,
                suppressed=suppressed,
            )

    def _blocked(self, elapsed: float) -> None:
        self.blocked += 1
        self.last_block = (elapsed, time.monotonic())
        if self._log_sampler.allow("blocked") is not None:
            log.warning(
                "strategy_blocked_loop",
                strategy=self.name,
                blocked_ms=round(elapsed * 1000, 1),
                limit_ms=round(self.max_block_s * 1000, 1),
            )

    def problems(self) -> list[str]:
        """Why this strategy makes the engine degraded now (recent failures, blocks, its own invariants)."""
        now = time.monotonic()
        found = []
        if self.last_failure is not None and now - self.last_failure[2] <= RECENT_S:
            kind, detail, _ = self.last_failure
            found.append(f"strategy {self.name}: {kind} ({detail}); {self.errors} failures in all")
        if self.last_block is not None and now - self.last_block[1] <= RECENT_S:
            found.append(
                f"strategy {self.name} blocked the loop for {self.last_block[0] * 1000:.0f} ms "
                f"(limit {self.max_block_s * 1000:.0f} ms)"
            )
        try:
            found.extend(f"strategy {self.name}: {p}" for p in self.strategy.problems())
        except Exception as error:  # a strategy's own report must not break health
            found.append(f"strategy {self.name}: problems() raised {type(error).__name__}")
        return found

    def health(self) -> dict[str, object]:
        return {
            "processed": self.processed,
            "signals": self.signals,
            "errors": self.errors,
            "failures": dict(self.failures),
            "last_error": None
            if self.last_failure is None
            else f"{self.last_failure[0]}: {self.last_failure[1]}",
            "blocked": self.blocked,
            "max_block_ms": round(self.max_block_s * 1000, 1),
            "publish_errors": self.publish_errors,
            "dropped": self.dropped,
            "queue_size": len(self._items),
        }
