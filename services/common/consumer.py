"""Subscribing to market data: ``md.<SYMBOL>.trades`` / ``.depth`` -> validated messages.

Shared by strategy_engine and context. Messages arrive by batched delivery (``delivery``: the
bus's bounded batch per subscription, drained by one task, in order, yielding to the loop every
``delivery.BATCH`` messages so health and requests are served during a burst). The handler runs
one message at a time, so it only decodes (``schemas.wire``: the contracts' rules, ~1 µs) and
hands the message on (to a bounded queue or an O(1) update). Nothing else happens per message:
counters are plain integers, read when asked; the seed's rates and the last-data age come from
them, sampled once a second (``SampledRates``).

Anything else that arrives on those subjects - arbitrary bytes, another schema version, a symbol
that is not the subject's, a decimal outside the rules, an event time in the future - is refused
before it can touch any state, counted by reason (``rejected`` in health), and logged as a sample
(bounded, never the message itself).

Telemetry: only a message that carries headers (the feed puts them on its own sample) takes the
instrumented path. One with ``traceparent`` gets a CONSUMER span ``process md.{symbol}.*`` (child
of the feed's producer span, its context handed on with the event), within this process's
``MD_TRACE_MAX_PER_S`` budget, however many the publisher sends; processing time and publish ->
consume lag (``Md-Publish-Ns``) are recorded at most once per ``LAG_SAMPLE_NS`` of receipt time
(~100/s), never per tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from schemas import rules, subjects
from schemas.rules import RuleViolation
from schemas.wire import DepthMsg, TradeMsg, decode_depth, decode_trade
from services.common import messaging
from services.common.bus import Bus, settled
from services.common.delivery import Handler
from services.common.instruments import messaging_attributes, observable_counter
from services.common.logging import LogSampler, get_logger
from services.common.markets import Instruments
from services.common.rates import SampledRates, seed_metrics
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = get_logger(__name__)

TradeHook = Callable[[TradeMsg, Context | None], None]
DepthHook = Callable[[DepthMsg, Context | None], None]
MarketMsg = TradeMsg | DepthMsg
#: An event time this far ahead of our clock is refused (``future_timestamp``): it would hold
#: every event-time window (VWAP) open for good.
MAX_FUTURE_NS = 60 * 1_000_000_000
_UNSEEN = "\x00unseen"  # not a symbol (``routes``' default)
#: Lag and processing-time samples: at most one per this much receipt time (~100/s).
LAG_SAMPLE_NS = 10_000_000


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
        self.rates = SampledRates(lambda: self.consumed)
        self._routes: dict[str, str | None] = {}  # subject -> its followed symbol, or None
        self._next_sample_ns = 0
        self._trace_tokens = 0.0
        self._trace_refilled_ns = 0
        #: Traced messages processed without a span: over this process's MD_TRACE_MAX_PER_S.
        self.trace_budget_skips = 0
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

    @property
    def last_message_monotonic(self) -> float | None:
        """When the last message was consumed (monotonic seconds, to within a second)."""
        self.rates.sync()
        return self.rates.last_change

    def _consumed_points(self) -> list[tuple[float, dict[str, Any]]]:
        return [
            (self.consumed["trade"], messaging_attributes(subjects.TRADES_TEMPLATE, self.service)),
            (self.consumed["depth"], messaging_attributes(subjects.DEPTH_TEMPLATE, self.service)),
        ]

    async def start(self) -> None:
        """Subscribe to every instrument's trades and depth; follow those of SYMBOLS (``markets``)."""
        limit = self.pending_msgs_limit
        self.rates.start()
        on_trade = self._handler("trade", decode_trade, self._on_trade)
        await self.bus.subscribe_batched(subjects.ALL_TRADES, on_trade, pending_msgs_limit=limit)
        on_depth = self._handler("depth", decode_depth, self._on_depth)
        await self.bus.subscribe_batched(subjects.ALL_DEPTH, on_depth, pending_msgs_limit=limit)
        await settled(self.bus.nc)

    def stop(self) -> None:
        """Stop sampling the rates (the subscriptions end with the connection's drain)."""
        self.rates.stop()

    def _handler(
        self, kind: str, decode: Callable[[bytes], MarketMsg], hook: Callable[[Any, Context | None], None]
    ) -> Handler:
        """The handler of one kind: route by subject -> decode -> check -> count -> hand on. Returns
        True when the hook's downstream is under pressure (checked every 16 messages)."""
        consumed, pressure, routes, route = self.consumed, self._pressure, self._routes, self._route
        time_ns, future_ns = time.time_ns, MAX_FUTURE_NS
        in_a_row = 0

        def on_msg(subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
            nonlocal in_a_row
            symbol = routes.get(subject, _UNSEEN)
            if symbol is _UNSEEN:
                symbol = route(subject)
            if symbol is None:
                self.ignored += 1
                return False
            if headers:  # the feed's sample: a trace and/or a lag sample
                self._instrumented(subject, data, headers, kind, decode, symbol, hook)
                return False
            try:
                event = decode(data)
                if event.symbol != symbol or event.ts_event > time_ns() + future_ns:
                    raise self._violation(event, subject)
            except RuleViolation as error:
                self._reject(subject, len(data), error)
                return False
            consumed[kind] += 1
            try:
                hook(event, None)
            except Exception as error:  # per-message boundary: a consumer bug costs one message, counted
                self._hook_failed(error)
            in_a_row += 1
            return in_a_row & 15 == 0 and pressure is not None and pressure()

        return on_msg

    def _route(self, subject: str) -> str | None:
        """``md.<SYMBOL>.<kind>`` -> the symbol if it is followed, else None; remembered once the
        instruments have decided about it (bounded as they are)."""
        symbol = subject[3 : subject.rindex(".")]  # one token
        wanted = self.instruments.follows(symbol)
        if symbol in self.instruments.decided and len(self._routes) < 2 * len(self.instruments.decided):
            self._routes[subject] = symbol if wanted else None
        return symbol if wanted else None

    @staticmethod
    def _violation(event: MarketMsg, subject: str) -> RuleViolation:
        """Why a decoded message is refused: not its subject's symbol, or an event time in the future."""
        if event.symbol != subject[3 : subject.rindex(".")]:
            return RuleViolation(
                "symbol_mismatch", f"symbol {rules.preview(event.symbol)} on {rules.preview(subject)}"
            )
        return RuleViolation("future_timestamp", f"ts_event {event.ts_event} is ahead of our clock")

    def _hook_failed(self, error: Exception) -> None:
        self.hook_errors += 1
        if self._log_sampler.allow("hook_error") is not None:
            log.error("consumer_hook_failed", service=self.service, error=rules.clip(repr(error), 300))

    def _instrumented(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        kind: str,
        decode: Callable[[bytes], MarketMsg],
        symbol: str,
        hook: Callable[[Any, Context | None], None],
    ) -> None:
        """The sampled path: a message with headers (a trace and/or a publish-time lag sample)."""
        started = time.perf_counter()
        received_ns = time.time_ns()
        template = subjects.TRADES_TEMPLATE if kind == "trade" else subjects.DEPTH_TEMPLATE
        span = None
        if messaging.TRACEPARENT in headers and self._trace_allowed(received_ns):
            span = messaging.consumer(self._tracer, subject, template, len(data), headers, symbol=symbol)
        try:
            event = decode(data)
            if event.symbol != symbol or event.ts_event > received_ns + MAX_FUTURE_NS:
                raise self._violation(event, subject)
        except RuleViolation as error:
            self._reject(subject, len(data), error)
            if span is not None:
                messaging.fail(span, ValueError("refused message"))
                span.end()
            return
        self.consumed[kind] += 1
        context = None
        if span is not None:
            span.set_attribute("exchange", event.exchange)
            context = trace.set_span_in_context(span)
        try:
            hook(event, context)
        except Exception as error:  # per-message boundary
            self._hook_failed(error)
        if span is not None:
            span.end()
        if received_ns < self._next_sample_ns:
            return
        self._next_sample_ns = received_ns + LAG_SAMPLE_NS
        attributes = {"type": kind, "exchange": event.exchange, "symbol": symbol, "service": self.service}
        published = headers.get(messaging.PUBLISH_NS_HEADER)
        if published is not None and published.isdigit() and len(published) < 20:
            self._publish_to_consume.record(max(received_ns - int(published), 0) / 1e9, attributes)
        self._process_duration.record(
            time.perf_counter() - started,
            {**messaging_attributes(template, self.service), "messaging.operation.name": "process"},
        )

    def _trace_allowed(self, now_ns: int) -> bool:
        """MD_TRACE_MAX_PER_S as a token bucket (a second's worth of burst): the feed's own sample
        passes whole, and a publisher that traces every message cannot make tracing our cost."""
        cap = self.telemetry.settings.md_trace_max_per_s
        if cap <= 0:
            return True
        elapsed_s = (now_ns - self._trace_refilled_ns) / 1e9
        self._trace_tokens = min(cap, self._trace_tokens + elapsed_s * cap)
        self._trace_refilled_ns = now_ns
        if self._trace_tokens < 1:
            self.trace_budget_skips += 1
            return False
        self._trace_tokens -= 1
        return True

    def _reject(self, subject: str, size: int, error: RuleViolation) -> None:
        self.invalid += 1
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        suppressed = self._log_sampler.allow(error.reason)
        if suppressed is not None:  # a sample, bounded: never the message itself
            log.warning(
                "invalid_message",
                subject=rules.preview(subject),
                reason=error.reason,
                error=error.detail,
                size=size,
                invalid=self.invalid,
                suppressed=suppressed,
            )

    def metrics(self, queue_sizes: tuple[int, int] = (0, 0)) -> dict[str, dict[str, float | int]]:
        """The seed's metrics shape for what this service consumes."""
        self.rates.sync()
        return seed_metrics(self.rates.counters["trade"], self.rates.counters["depth"], queue_sizes)


__all__ = ["LAG_SAMPLE_NS", "MarketDataSubscriber"]
