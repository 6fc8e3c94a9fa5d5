"""The context process: md.<SYMBOL>.* -> rolling context, answered on context.<SYMBOL>.snapshot."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.micro.request import Request

from schemas import DepthUpdate, TradeTick, subjects
from services.common.bus import Bus, BusConnectError
from services.common.consumer import MarketDataSubscriber
from services.common.health import Condition, ExtraEndpoint, HealthService, age_s
from services.common.lifecycle import FatalError
from services.common.logging import get_logger
from services.context.settings import ContextSettings
from services.context.state import SymbolContext

SERVICE = "context"
log = get_logger(SERVICE)


class ContextService:
    def __init__(self, bus: Bus, settings: ContextSettings) -> None:
        self.bus = bus
        self.contexts = {
            s: SymbolContext(s, settings.context_history_trades, settings.context_vwap_window_s)
            for s in settings.symbols
        }
        self.subscriber = MarketDataSubscriber(bus, settings.symbols, self._on_trade, self._on_depth)
        self.stale_after_s = settings.health_stale_after_s
        self.queries = 0
        self.unknown_queries = 0

    def _on_trade(self, tick: TradeTick) -> None:
        self.contexts[tick.symbol].on_trade(tick)

    def _on_depth(self, update: DepthUpdate) -> None:
        self.contexts[update.symbol].on_depth(update)

    async def on_snapshot_request(self, request: Request) -> None:
        self.queries += 1
        symbol = subjects.symbol_of(request.subject)
        context = self.contexts.get(symbol)
        if context is None:
            self.unknown_queries += 1
            message = f"unknown symbol {symbol!r}: this context service keeps {sorted(self.contexts)}"
            body = orjson.dumps({"error": message, "code": 404, "known_symbols": sorted(self.contexts)})
            await request.respond_error("404", message, data=body)
            return
        await request.respond(context.snapshot().to_json(), headers={"Content-Type": "application/json"})

    def condition(self) -> Condition:
        return Condition(
            connected=self.bus.is_connected,
            last_data_age_s=age_s(self.subscriber.last_message_monotonic),
            stale_after_s=self.stale_after_s,
        )

    def details(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.subscriber.consumed),
            "invalid_messages": self.subscriber.invalid,
            "slow_consumer_drops": self.bus.stats.slow_consumer_drops,
            "queries": self.queries,
            "symbols": {
                s: {"trades": c.trade_count, "book_synced": c.book_synced, "book_gaps": c.book_gaps}
                for s, c in self.contexts.items()
            },
        }


async def run_context(settings: ContextSettings, stop: asyncio.Event) -> int:
    try:
        bus = await Bus.connect(settings.nats_url, SERVICE, settings.nats_connect_timeout_s)
    except BusConnectError as error:
        raise FatalError(str(error)) from None
    service = ContextService(bus, settings)
    health = HealthService(
        SERVICE,
        "Rolling market context per symbol, on context.<SYMBOL>.snapshot",
        service.condition,
        service.details,
        service.subscriber.metrics,
    )
    await service.subscriber.start()
    await health.start(
        bus, [ExtraEndpoint("snapshot", subjects.CONTEXT_SNAPSHOT_PATTERN, service.on_snapshot_request)]
    )
    log.info("service_started", symbols=settings.symbols)
    await stop.wait()
    await health.stop()
    await bus.drain()
    log.info("service_stopped", **service.details())
    return 0
