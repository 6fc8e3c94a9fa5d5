"""The strategy_engine process: md.<SYMBOL>.* -> strategies -> signals.<strategy>.<SYMBOL>."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from opentelemetry.context import Context

from schemas.wire import DepthMsg, TradeMsg
from services.common.bus import Bus
from services.common.consumer import MarketDataSubscriber
from services.common.health import Condition, HealthService, age_s
from services.common.instruments import observable_counter, observable_gauge
from services.common.lifecycle import FatalError, run_until_stopped, start_runtime
from services.common.logging import get_logger
from services.common.telemetry import Telemetry
from services.strategy_engine.runner import StrategyRunner
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.strategy import load_strategies

SERVICE = "strategy_engine"
log = get_logger(SERVICE)


class StrategyEngine:
    def __init__(self, bus: Bus, settings: StrategySettings, telemetry: Telemetry) -> None:
        try:
            strategies = load_strategies(settings.strategies, settings)
        except ValueError as error:
            raise FatalError(f"STRATEGIES: {error}") from None
        tracer = telemetry.tracer()
        self.runners: list[StrategyRunner] = [
            StrategyRunner(
                s, bus, settings.strategy_queue_size, tracer, settings.strategy_max_block_ms / 1000
            )
            for s in strategies
        ]
        self._offers = [r.offer for r in self.runners]
        self._pressed = [r.pressed for r in self.runners]
        # One strategy (the usual case): the handler offers to its queue directly.
        hook = self.runners[0].offer if len(self.runners) == 1 else self._on_event
        self.subscriber = MarketDataSubscriber(
            bus,
            settings.symbols,
            hook,
            hook,
            pressure=self._under_pressure,
            telemetry=telemetry,
            service=SERVICE,
            pending_msgs_limit=settings.nats_pending_msgs_limit,
        )
        self.bus = bus
        self.stale_after_s = settings.health_stale_after_s
        self._register_metrics(telemetry)

    def _on_event(self, event: TradeMsg | DepthMsg, context: Context | None) -> None:
        for offer in self._offers:
            offer(event, context)

    def watch(self, stop: threading.Event, every_s: float = 0.5) -> None:
        """A thread: names a strategy whose hook is blocking the loop *now* (health can only tell
        once the hook returns, since the loop that answers health is the one being blocked)."""
        reported: set[tuple[str, float]] = set()
        while not stop.wait(every_s):
            now = time.monotonic()
            for runner in self.runners:
                since = runner.running_since
                if (
                    since is not None
                    and now - since > max(runner.max_block_s, every_s)
                    and (runner.name, since) not in reported
                ):
                    reported.add((runner.name, since))
                    log.warning("strategy_blocking", strategy=runner.name, blocking_s=round(now - since, 1))
            if len(reported) > 1000:
                reported.clear()

    def _under_pressure(self) -> bool:
        return any(pressed() for pressed in self._pressed)

    def _register_metrics(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter()
        observable_counter(
            meter,
            "strategy.signals",
            lambda: [
                (n, {"strategy": r.name, "symbol": s})
                for r in self.runners
                for s, n in r.signals_by_symbol.items()
            ],
            "{signal}",
            "signals published",
        )
        observable_counter(
            meter,
            "strategy.errors",
            lambda: [
                (n, {"strategy": r.name, "kind": k}) for r in self.runners for k, n in r.failures.items()
            ],
            "{error}",
            "strategy failures by kind: raised, returned_none, wrong_type, invalid_signal, too_many_signals",
        )
        observable_gauge(
            meter,
            "md.queue.size",
            lambda: [(r.queue_len, {"service": SERVICE, "strategy": r.name}) for r in self.runners],
            "{event}",
            "events waiting for each strategy",
        )
        observable_counter(
            meter,
            "md.events.dropped",
            lambda: [
                (r.dropped, {"service": SERVICE, "strategy": r.name, "reason": "queue_full"})
                for r in self.runners
            ],
            "{event}",
            "events a strategy queue dropped",
        )

    def condition(self) -> Condition:
        drops = [r.last_drop_monotonic for r in self.runners if r.last_drop_monotonic is not None]
        return Condition(
            connected=self.bus.is_connected,
            last_data_age_s=age_s(self.subscriber.last_message_monotonic),
            stale_after_s=self.stale_after_s,
            last_drop_age_s=age_s(max(drops)) if drops else None,
            problems=tuple(p for r in self.runners for p in r.problems()),
        )

    def details(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.subscriber.consumed),
            "invalid_messages": self.subscriber.invalid,
            "rejected": dict(self.subscriber.rejected),
            "slow_consumer_drops": self.bus.stats.slow_consumer_drops,
            "strategies": {r.name: r.health() for r in self.runners},
        }

    def metrics(self) -> dict[str, Any]:
        waiting = [r.queued for r in self.runners]
        queued = (sum(q["trade"] for q in waiting), sum(q["depth"] for q in waiting))
        return self.subscriber.metrics(queued)


async def run_engine(settings: StrategySettings, stop: asyncio.Event) -> int:
    bus, telemetry = await start_runtime(SERVICE, settings)
    try:
        engine = StrategyEngine(bus, settings, telemetry)
    except FatalError:
        await bus.drain()
        telemetry.shutdown()
        raise
    health = HealthService(
        SERVICE,
        "Strategies on md.<SYMBOL>.* -> signals.<strategy>.<SYMBOL>",
        engine.condition,
        engine.details,
        engine.metrics,
        tracer=telemetry.tracer(),
    )
    tasks = [asyncio.create_task(r.run(), name=f"strategy-{r.name}") for r in engine.runners]
    watchdog_stop = threading.Event()
    threading.Thread(
        target=engine.watch, args=(watchdog_stop,), name="strategy-watchdog", daemon=True
    ).start()
    await engine.subscriber.start()
    await health.start(bus)
    log.info("service_started", strategies=[r.name for r in engine.runners], symbols=settings.symbols)
    failure = await run_until_stopped(stop, *tasks)
    watchdog_stop.set()
    engine.subscriber.stop()
    await health.stop()
    await bus.drain()
    telemetry.shutdown()
    log.info("service_stopped", **engine.details())
    if failure is not None:
        raise FatalError(str(failure)) from failure
    return 0
