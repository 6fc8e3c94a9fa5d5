"""Subscribing to market data: ``md.<SYMBOL>.trades`` / ``.depth`` -> validated messages.

Shared by strategy_engine and context. NATS runs one subscription's callbacks one at a time, so
the callback only decodes (``schemas.wire``: the contracts' rules, ~1 µs) and hands the message on
(to a bounded queue or an O(1) update). Anything else that arrives on those subjects - arbitrary
bytes, another schema version, a symbol that is not the subject's, a decimal outside the rules, an
event time in the future - is refused before it can touch any state, counted by reason
(``rejected`` in health), and logged as a sample (bounded, never the message itself).

Telemetry: a message that carries ``traceparent`` gets a CONSUMER span ``process md.{symbol}.*``
(child of the feed's producer span), whose context is handed on with the event; processing time
and publish -> consume lag are sampled into histograms, never recorded per tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context

from schemas import rules, subjects
from schemas.rules import RuleViolation
from schemas.wire import DepthMsg, TradeMsg, decode_depth, decode_trade
from services.common import messaging
from services.common.bus import Bus, settled
from services.common.instruments import LAG_SAMPLE_EVERY, messaging_attributes, observable_counter
from services.common.logging import LogSampler, get_logger
from services.common.markets import Instruments
from services.common.rates import RollingCounter, seed_metrics
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = get_logger(__name__)

TradeHook = Callable[[TradeMsg, Context | None], None]
DepthHook = Callable[[DepthMsg, Context | None], None]
MarketMsg = TradeMsg | DepthMsg
#: An event time this far ahead of our clock is refused (``future_timestamp``): it would hold
#: every event-time window (VWAP) open for good.
MAX_FUTURE_NS = 60 * 1_000_000_000


class MarketDataSubscriber:
    def __init__(
        self,
        bus: Bus,
        symbols: list[str],
        on_trade: TradeHook,
        on_depth: DepthHook,
        pressure: Callable[[], bool] | None = None,
        telemetry: Telemetry | None = None,
        service: str = "consumer",
        pending_msgs_limit: int = 524_288,
    ) -> None:
        self.bus = bus
        self.pending_msgs_limit = pending_msgs_limit
        self.symbols = symbols
        #: What it follows: SYMBOLS and their derivative ids, as the feed publishes them (``markets``).
        self.instruments = Instruments(symbols)
        self.ignored = 0  # messages of instruments it does not follow
        self._on_trade = on_trade
        self._on_depth = on_depth
        # When downstream queues fill up, the callback yields to let their tasks catch up, so a
        # burst waits in NATS's pending buffer instead of being dropped downstream.
        self._pressure = pressure
        self.service = service
        self.consumed = {"trade": 0, "depth": 0}
        self.invalid = 0
        self.rejected: dict[str, int] = {}  # by reason
        self.hook_errors = 0
        self._log_sampler = LogSampler()
        self.last_message_monotonic: float | None = None
        self.trade_rate = RollingCounter()
        self.depth_rate = RollingCounter()
        self.telemetry = telemetry or setup_telemetry(service, TelemetrySettings(otel_sdk_disabled=True))
        self._tracer = self.telemetry.tracer()
        meter = self.telemetry.meter()
        self._process_duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="decode and hand-off of one message (sampled)"
        )
        self._publish_to_consume = meter.create_histogram(
            "md.lag.publish_to_consume", unit="s", description="feed publish -> this consumer (sampled)"
        )
        observable_counter(
            meter,
            "messaging.client.consumed.messages",
            self._consumed_points,
            "{message}",
            "messages consumed",
        )

    def _consumed_points(self) -> list[tuple[float, dict[str, Any]]]:
        return [
            (self.consumed["trade"], messaging_attributes(subjects.TRADES_TEMPLATE, self.service)),
            (self.consumed["depth"], messaging_attributes(subjects.DEPTH_TEMPLATE, self.service)),
        ]

    async def start(self) -> None:
        """Subscribe to every instrument's trades and depth; follow those of SYMBOLS (``markets``)."""
        limit = self.pending_msgs_limit
        on_trade = self._handler("trade", decode_trade, self.trade_rate, self._on_trade)
        await self.bus.subscribe(subjects.ALL_TRADES, on_trade, pending_msgs_limit=limit)
        on_depth = self._handler("depth", decode_depth, self.depth_rate, self._on_depth)
        await self.bus.subscribe(subjects.ALL_DEPTH, on_depth, pending_msgs_limit=limit)
        await settled(self.bus.nc)

    def _handler(
        self,
        kind: str,
        decode: Callable[[bytes], MarketMsg],
        rate: RollingCounter,
        hook: Callable[[Any, Context | None], None],
    ) -> Callable[[Msg], Awaitable[None]]:
        """The NATS callback of one kind: route by subject -> decode -> check -> count -> hand on."""
        consumed, pressure, follows = self.consumed, self._pressure, self.instruments.follows

        async def on_msg(msg: Msg) -> None:
            symbol = msg.subject[3 : msg.subject.rindex(".")]  # md.<SYMBOL>.<kind>: one token
            if not follows(symbol):
                self.ignored += 1
                return
            if msg.headers:  # sampled: a trace and/or a lag sample
                await self._instrumented(msg, kind, decode, symbol, hook)
                return
            event = self._accept(msg, decode, symbol)
            if event is None:
                return
            consumed[kind] += 1
            self.last_message_monotonic = now = time.monotonic()
            rate.add(1, now)
            self._hand_on(hook, event, None)
            if pressure is not None and pressure():
                await asyncio.sleep(0)

        return on_msg

    def _accept(self, msg: Msg, decode: Callable[[bytes], MarketMsg], symbol: str) -> MarketMsg | None:
        """The message as a checked event, or None (refused and counted)."""
        try:
            event = decode(msg.data)
            if event.symbol != symbol:
                raise RuleViolation(
                    "symbol_mismatch", f"symbol {rules.preview(event.symbol)} on {rules.preview(msg.subject)}"
                )
            if event.ts_event > time.time_ns() + MAX_FUTURE_NS:
                raise RuleViolation("future_timestamp", f"ts_event {event.ts_event} is ahead of our clock")
        except RuleViolation as error:
            self._reject(msg, error)
            return None
        return event

    def _hand_on(
        self, hook: Callable[[Any, Context | None], None], event: MarketMsg, context: Context | None
    ) -> None:
        try:
            hook(event, context)
        except Exception as error:  # per-message boundary: a consumer bug costs one message, counted
            self.hook_errors += 1
            if self._log_sampler.allow("hook_error") is not None:
                log.error("consumer_hook_failed", service=self.service, error=rules.clip(repr(error), 300))

    async def _instrumented(
        self,
        msg: Msg,
        kind: str,
        decode: Callable[[bytes], MarketMsg],
        symbol: str,
        hook: Callable[[Any, Context | None], None],
    ) -> None:
        """The sampled path: a message with headers (a trace and/or a publish-time lag sample)."""
        started = time.perf_counter()
        received_ns = time.time_ns()
        headers = msg.headers or {}
        template = subjects.TRADES_TEMPLATE if kind == "trade" else subjects.DEPTH_TEMPLATE
        span = messaging.consumer(self._tracer, msg.subject, template, len(msg.data), headers, symbol=symbol)
        event = self._accept(msg, decode, symbol)
        if event is None:
            if span is not None:
                messaging.fail(span, ValueError("refused message"))
                span.end()
            return
        self.consumed[kind] += 1
        self.last_message_monotonic = now = time.monotonic()
        (self.trade_rate if kind == "trade" else self.depth_rate).add(1, now)
        context = trace.set_span_in_context(span) if span is not None else None
        if span is not None:
            span.set_attribute("exchange", event.exchange)
        self._hand_on(hook, event, context)
        if span is not None:
            span.end()
        attributes = {"type": kind, "exchange": event.exchange, "symbol": symbol, "service": self.service}
        published = headers.get(messaging.PUBLISH_NS_HEADER)
        if published is not None and published.isdigit() and len(published) < 20:
            self._publish_to_consume.record(max(received_ns - int(published), 0) / 1e9, attributes)
        self._process_duration.record(
            time.perf_counter() - started,
            {**messaging_attributes(template, self.service), "messaging.operation.name": "process"},
        )

    def _reject(self, msg: Msg, error: RuleViolation) -> None:
        self.invalid += 1
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        suppressed = self._log_sampler.allow(error.reason)
        if suppressed is not None:  # a sample, bounded: never the message itself
            log.warning(
                "invalid_message",
                subject=rules.preview(msg.subject),
                reason=error.reason,
                error=error.detail,
                size=len(msg.data),
                invalid=self.invalid,
                suppressed=suppressed,
            )

    def metrics(self, queue_sizes: tuple[int, int] = (0, 0)) -> dict[str, dict[str, float | int]]:
        """The seed's metrics shape for what this service consumes."""
        return seed_metrics(self.trade_rate, self.depth_rate, queue_sizes)


__all__ = ["LAG_SAMPLE_EVERY", "MarketDataSubscriber"]
