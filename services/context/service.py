"""The context process: md.<SYMBOL>.* -> rolling context, answered on context.<SYMBOL>.snapshot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from nats.micro.request import Request
from opentelemetry.context import Context

from schemas import rules, subjects
from schemas.wire import DepthMsg, TradeMsg
from services.common import messaging
from services.common.bus import Bus
from services.common.consumer import MarketDataSubscriber
from services.common.health import Condition, ExtraEndpoint, HealthService, age_s
from services.common.instruments import observable_counter
from services.common.lifecycle import start_runtime
from services.common.logging import get_logger
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry
from services.context.settings import ContextSettings
from services.context.state import SymbolContext

SERVICE = "context"
log = get_logger(SERVICE)


class ContextService:
    def __init__(self, bus: Bus, settings: ContextSettings, telemetry: Telemetry | None = None) -> None:
        self.bus = bus
        self.contexts = {
            s: SymbolContext(s, settings.context_history_trades, settings.context_vwap_window_s)
            for s in settings.symbols
        }
        self.telemetry = telemetry or setup_telemetry(SERVICE, TelemetrySettings(otel_sdk_disabled=True))
        self.subscriber = MarketDataSubscriber(
            bus, settings.symbols, self._on_trade, self._on_depth, telemetry=self.telemetry, service=SERVICE
        )
        self.stale_after_s = settings.health_stale_after_s
        self.queries = 0
        self.unknown_queries = 0
        self.failed_queries = 0
        self._tracer = self.telemetry.tracer()
        meter = self.telemetry.meter()
        self._query_duration = meter.create_histogram(
            "context.query.duration", unit="s", description="context.<SYMBOL>.snapshot request handling"
        )
        observable_counter(
            meter,
            "md.book.gaps",
            lambda: [(c.book_gaps, {"service": SERVICE, "symbol": s}) for s, c in self.contexts.items()],
            "{gap}",
            "depth update-id gaps detected (the book waits for the next snapshot)",
        )

    def _on_trade(self, tick: TradeMsg, _: Context | None) -> None:
        self.contexts[tick.symbol].on_trade(tick)

    def _on_depth(self, update: DepthMsg, _: Context | None) -> None:
        self.contexts[update.symbol].on_depth(update)

    async def on_snapshot_request(self, request: Request) -> None:
        started = time.perf_counter()
        self.queries += 1
        symbol = subjects.symbol_of(request.subject)
        with messaging.server_span(
            self._tracer,
            f"query {subjects.CONTEXT_SNAPSHOT_TEMPLATE}",
            request.subject,
            request.headers,
            symbol=symbol,
        ) as span:
            context = self.contexts.get(symbol)
            if context is None:
                self.unknown_queries += 1
                known = sorted(self.contexts)
                message = f"unknown symbol {rules.preview(symbol)}: this context service keeps {known}"
                body = orjson.dumps({"error": message, "code": 404, "known_symbols": sorted(self.contexts)})
                span.set_attribute("error.type", "unknown_symbol")
                await request.respond_error("404", message, data=body)
                outcome = "unknown_symbol"
            else:
                try:
                    body = context.snapshot().to_json()
                except Exception as error:  # per-request boundary: a clear 500, never a crash or silence
                    self.failed_queries += 1
                    message = f"could not build the snapshot of {symbol}: {type(error).__name__}"
                    log.error("snapshot_failed", symbol=symbol, error=rules.clip(repr(error)))
                    span.set_attribute("error.type", type(error).__name__)
                    await request.respond_error(
                        "500", message, data=orjson.dumps({"error": message, "code": 500})
                    )
                    outcome = "error"
                else:
                    await request.respond(body, headers={"Content-Type": "application/json"})
                    outcome = "ok"
        self._query_duration.record(time.perf_counter() - started, {"outcome": outcome})

    def condition(self) -> Condition:
        return Condition(
            connected=self.bus.is_connected,
            last_data_age_s=age_s(self.subscriber.last_message_monotonic),
            stale_after_s=self.stale_after_s,
            problems=tuple(p for c in self.contexts.values() for p in c.problems()),
        )

    def details(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.subscriber.consumed),
            "invalid_messages": self.subscriber.invalid,
            "rejected": dict(self.subscriber.rejected),
            "slow_consumer_drops": self.bus.stats.slow_consumer_drops,
            "queries": self.queries,
            "failed_queries": self.failed_queries,
            "symbols": {
                s: {"trades": c.trade_count, "book_synced": c.book_synced, "book_gaps": c.book_gaps}
                for s, c in self.contexts.items()
            },
        }


async def run_context(settings: ContextSettings, stop: asyncio.Event) -> int:
    bus, telemetry = await start_runtime(SERVICE, settings)
    service = ContextService(bus, settings, telemetry)
    health = HealthService(
        SERVICE,
        "Rolling market context per symbol, on context.<SYMBOL>.snapshot",
        service.condition,
        service.details,
        service.subscriber.metrics,
        tracer=telemetry.tracer(),
    )
    await service.subscriber.start()
    await health.start(
        bus, [ExtraEndpoint("snapshot", subjects.CONTEXT_SNAPSHOT_PATTERN, service.on_snapshot_request)]
    )
    log.info("service_started", symbols=settings.symbols)
    await stop.wait()
    await health.stop()
    await bus.drain()
    telemetry.shutdown()
    log.info("service_stopped", **service.details())
    return 0
