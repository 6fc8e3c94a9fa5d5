"""Health over NATS: the status rules, and registration as a NATS micro service.

Every service registers with ``nats.micro`` (so ``$SRV.PING/INFO/STATS`` discover it) and answers
``health.<service>`` with JSON: service, status, reasons, uptime_s, version, plus its own sections.
INFO gets a description and STATS a ``data`` object for every endpoint, as the official
``nats micro`` schemas require (nats-py's defaults send null for both).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointStats, Service
from opentelemetry import trace

from schemas import subjects
from services import __version__
from services.common import messaging
from services.common.bus import Bus, settled
from services.common.logging import get_logger

log = get_logger(__name__)

Status = Literal["ok", "degraded", "down"]
#: Drops within this many seconds make a service ``degraded``.
RECENT_DROP_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Condition:
    """Inputs of the status rules, gathered by each service."""

    connected: bool
    last_data_age_s: float | None
    stale_after_s: float
    gave_up: bool = False
    #: What is wrong beyond the connection, each a readable reason ("BTCUSDT resyncing: sequence
    #: gap", "strategy x raised 3 errors in the last minute" ...): any makes the service degraded.
    problems: tuple[str, ...] = ()
    last_drop_age_s: float | None = None
    #: Why it is not connected, when it is not: the last connect error, naming the host ("cannot
    #: resolve stream.binance.com (...)", "... answered the websocket upgrade with HTTP 451: ...").
    cause: str | None = None


def evaluate(condition: Condition) -> tuple[Status, list[str]]:
    """``down`` when not connected or given up; ``degraded`` when connected but stale, with a
    problem (a symbol resyncing or down, a broken invariant ...) or dropping events in the last
    minute; else ``ok``. Reasons say why it is not ok (``down``: with its cause when known, and
    which symbols it costs when the service knows)."""
    because = f": {condition.cause}" if condition.cause else ""
    if condition.gave_up:
        return "down", [f"gave up reconnecting{because}"]
    if not condition.connected:
        return "down", [f"not connected{because}", *condition.problems]
    reasons = []
    if condition.last_data_age_s is None:
        reasons.append("no data yet")
    elif condition.last_data_age_s > condition.stale_after_s:
        reasons.append(
            f"stale: no data for {condition.last_data_age_s:.1f}s (> {condition.stale_after_s:g}s)"
        )
    reasons.extend(condition.problems)
    if condition.last_drop_age_s is not None and condition.last_drop_age_s <= RECENT_DROP_WINDOW_S:
        reasons.append("dropped events in the last minute")
    return ("degraded" if reasons else "ok"), reasons


def age_s(monotonic_stamp: float | None) -> float | None:
    return None if monotonic_stamp is None else time.monotonic() - monotonic_stamp


def age_since_ns(wall_ns: int | None) -> float | None:
    """Seconds since a wall-clock nanosecond timestamp (e.g. an event's ts_recv)."""
    return None if wall_ns is None else (time.time_ns() - wall_ns) / 1e9


RequestHandler = Callable[[Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExtraEndpoint:
    name: str
    subject: str
    handler: RequestHandler
    #: None: the service's (one member answers); a group of its own: every instance answers.
    queue_group: str | None = None


class HealthService:
    """Registers ``name`` as a micro service with a ``health`` endpoint (and any extras)."""

    def __init__(
        self,
        name: str,
        description: str,
        condition: Callable[[], Condition],
        details: Callable[[], dict[str, Any]] = dict,
        stats_data: Callable[[], dict[str, Any]] = dict,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self._condition = condition
        self._details = details
        self._stats_data = stats_data
        self._started = time.monotonic()
        self._service: Service | None = None
        self._tracer = tracer or trace.NoOpTracer()
        self._bus: Bus | None = None

    def report(self) -> dict[str, Any]:
        status, reasons = evaluate(self._condition())
        bus: dict[str, Any] = {}
        if self._bus is not None:
            stats = self._bus.stats
            bus = {
                "permission_violations": stats.permission_violations,
                "nats": {
                    "connected": self._bus.is_connected,
                    "disconnects": stats.disconnects,
                    "reconnects": stats.reconnects,
                    "slow_consumer_drops": stats.slow_consumer_drops,
                    "errors": stats.errors,
                },
            }
        if self._bus is not None:
            violation_age = age_s(self._bus.stats.last_permission_violation_monotonic)
            if violation_age is not None and violation_age <= RECENT_DROP_WINDOW_S:
                reasons.append("NATS permission violations in the last minute")
                status = "degraded" if status == "ok" else status
        return {
            "service": self.name,
            "status": status,
            "reasons": reasons,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "version": __version__,
            **bus,
            **self._details(),
        }

    def stats(self) -> dict[str, Any]:
        """The ``data`` of the health endpoint's STATS (the feed: the seed's metrics shape)."""
        return self._stats_data()

    async def start(self, bus: Bus, extra: Sequence[ExtraEndpoint] = ()) -> None:
        self._bus = bus
        self._service = await add_service(
            bus.nc,
            name=self.name,
            version=__version__,
            description=self.description,
            metadata={"health_subject": subjects.health(self.name)},
            queue_group=self.name,
            stats_handler=self._endpoint_data,
        )
        await self._service.add_endpoint(
            name="health", subject=subjects.health(self.name), handler=self._on_health
        )
        for endpoint in extra:
            await self._service.add_endpoint(
                name=endpoint.name,
                subject=endpoint.subject,
                handler=endpoint.handler,
                queue_group=endpoint.queue_group,
            )
        await settled(bus.nc)  # subscribed at the server when this returns: a request now finds us

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()
            self._service = None

    def _endpoint_data(self, endpoint: EndpointStats) -> dict[str, Any]:
        # The official STATS schema wants an object here for every endpoint.
        return self._stats_data() if endpoint.name == "health" else {}

    async def _on_health(self, request: Request) -> None:
        subject = subjects.health(self.name)
        with messaging.server_span(self._tracer, f"health {self.name}", subject, request.headers) as span:
            report = self.report()
            span.set_attribute("health.status", report["status"])
            await request.respond(orjson.dumps(report), headers={"Content-Type": "application/json"})
