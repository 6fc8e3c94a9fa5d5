"""Subscribing to market data: ``md.<SYMBOL>.trades`` / ``.depth`` -> validated contracts.

Shared by strategy_engine and context. NATS runs one subscription's callbacks one at a time, so
the callback only decodes and hands the contract on (to a bounded queue or an O(1) update). A
message that is not a valid contract is counted and logged (sampled), never fatal.

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
from pydantic import ValidationError

from schemas import DepthUpdate, TradeTick, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.instruments import LAG_SAMPLE_EVERY, messaging_attributes, observable_counter
from services.common.logging import get_logger
from services.common.rates import RollingCounter, seed_metrics
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = get_logger(__name__)

TradeHook = Callable[[TradeTick, Context | None], None]
DepthHook = Callable[[DepthUpdate, Context | None], None]


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
    ) -> None:
        self.bus = bus
        self.symbols = symbols
        self._on_trade = on_trade
        self._on_depth = on_depth
        # When downstream queues fill up, the callback yields to let their tasks catch up, so a
        # burst waits in NATS's pending buffer instead of being dropped downstream.
        self._pressure = pressure
        self.service = service
        self.consumed = {"trade": 0, "depth": 0}
        self.invalid = 0
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
        on_trade = self._handler("trade", TradeTick, self.trade_rate, self._on_trade)
        on_depth = self._handler("depth", DepthUpdate, self.depth_rate, self._on_depth)
        for symbol in self.symbols:
            await self.bus.subscribe(subjects.trades(symbol), on_trade)
            await self.bus.subscribe(subjects.depth(symbol), on_depth)
        await self.bus.nc.flush()

    def _handler(
        self, kind: str, model: type[Any], rate: RollingCounter, hook: Callable[[Any, Context | None], None]
    ) -> Callable[[Msg], Awaitable[None]]:
        """The NATS callback of one kind: decode -> count -> hand on (a closure: no call per message)."""
        consumed, pressure = self.consumed, self._pressure

        async def on_msg(msg: Msg) -> None:
            if msg.headers:  # sampled: a trace and/or a lag sample
                await self._instrumented(msg, kind)
                return
            try:
                event = model.model_validate_json(msg.data)
            except ValidationError as error:
                self._invalid(msg, error)
                return
            consumed[kind] += 1
            self.last_message_monotonic = now = time.monotonic()
            rate.add(1, now)
            hook(event, None)
            if pressure is not None and pressure():
                await asyncio.sleep(0)

        return on_msg

    async def _instrumented(self, msg: Msg, kind: str) -> None:
        """The sampled path: a message with headers (a trace and/or a publish-time lag sample)."""
        started = time.perf_counter()
        received_ns = time.time_ns()
        headers = msg.headers or {}
        template = subjects.TRADES_TEMPLATE if kind == "trade" else subjects.DEPTH_TEMPLATE
        symbol = subjects.symbol_of(msg.subject)
        span = messaging.consumer(self._tracer, msg.subject, template, len(msg.data), headers, symbol=symbol)
        try:
            if kind == "trade":
                tick = TradeTick.model_validate_json(msg.data)
                event: TradeTick | DepthUpdate = tick
            else:
                event = DepthUpdate.model_validate_json(msg.data)
        except ValidationError as error:
            if span is not None:
                messaging.fail(span, error)
                span.end()
            self._invalid(msg, error)
            return
        self.consumed[kind] += 1
        self.last_message_monotonic = now = time.monotonic()
        (self.trade_rate if kind == "trade" else self.depth_rate).add(1, now)
        context = trace.set_span_in_context(span) if span is not None else None
        if span is not None:
            span.set_attribute("exchange", event.exchange)
        if isinstance(event, TradeTick):
            self._on_trade(event, context)
        else:
            self._on_depth(event, context)
        if span is not None:
            span.end()
        attributes = {"type": kind, "exchange": event.exchange, "symbol": symbol, "service": self.service}
        published = headers.get(messaging.PUBLISH_NS_HEADER)
        if published is not None and published.isdigit():
            self._publish_to_consume.record(max(received_ns - int(published), 0) / 1e9, attributes)
        self._process_duration.record(
            time.perf_counter() - started,
            {**messaging_attributes(template, self.service), "messaging.operation.name": "process"},
        )

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
        return seed_metrics(self.trade_rate, self.depth_rate, queue_sizes)


__all__ = ["LAG_SAMPLE_EVERY", "MarketDataSubscriber"]
