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
        self.settings = settings
        #: One context per instrument it follows (SYMBOLS and their -PERP / _<expiry> ids), made as
        #: the instrument's first message arrives.
        self.contexts: dict[str, SymbolContext] = {}
        bus.on_loss(self._lost)
        self.telemetry = telemetry or setup_telemetry(SERVICE, TelemetrySettings(otel_sdk_disabled=True))
        self.subscriber = MarketDataSubscriber(
            bus,
            settings.symbols,
            self._on_trade,
            self._on_depth,
            telemetry=self.telemetry,
            service=SERVICE,
            pending_msgs_limit=settings.nats_pending_msgs_limit,
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
            lambda: [
                (c.book_gaps, {"service": SERVICE, "symbol": s}) for s, c in list(self.contexts.items())
            ],
            "{gap}",
            "gaps in a book's depth stream (seq gaps, a new feed run, lost messages): it resyncs by request",
        )
        observable_counter(
            meter,
            "md.book.recoveries",
            lambda: [
                (c.keeper.stats.recoveries, {"service": SERVICE, "symbol": s})
                for s, c in list(self.contexts.items())
            ],
            "{recovery}",
            "times a book became synced again (from the feed's book on request, or a snapshot)",
        )

    def _context(self, symbol: str) -> SymbolContext:
        context = self.contexts.get(symbol)
        if context is None:
            settings = self.settings
            context = self.contexts[symbol] = SymbolContext(
                symbol, settings.context_history_trades, settings.context_vwap_window_s, self._request
            )
        return context

    async def _request(self, subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
        reply = await self.bus.request(subject, body, timeout_s=2.0)
        return dict(reply.headers or {}), reply.data

    def _lost(self, reason: str) -> None:
        """NATS may have dropped messages (a slow consumer, a reconnect): every book resyncs."""
        for context in self.contexts.values():
            context.keeper.lost(reason, f"messages may have been lost ({reason})")

    def _on_trade(self, tick: TradeMsg, _: Context | None) -> None:
        context = self.contexts.get(tick.symbol)
        if context is None:
            context = self._context(tick.symbol)
        context.on_trade(tick)

    def _on_depth(self, update: DepthMsg, _: Context | None) -> None:
        self._context(update.symbol).on_depth(update)

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
                message = (
                    f"unknown symbol {rules.preview(symbol)}: this context service follows "
                    f"{sorted(self.settings.symbols)} and has data for {known}"
                )
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
            "follows": sorted(self.settings.symbols),
            "ignored_messages": self.subscriber.ignored,
            "symbols": {
                s: {
                    "trades": c.trade_count,
                    "book_synced": c.book_synced,
                    "book": c.keeper.reason,
                    "book_gaps": c.book_gaps,
                    "book_recoveries": c.keeper.stats.recoveries,
                    "book_requests": c.keeper.stats.requests,
                }
                for s, c in sorted(self.contexts.items())
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
    service.subscriber.stop()
    await health.stop()
    for context in service.contexts.values():
        await context.keeper.close()
    await bus.drain()
    telemetry.shutdown()
    log.info("service_stopped", **service.details())
    return 0
