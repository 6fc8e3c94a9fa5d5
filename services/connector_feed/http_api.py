"""The seed's HTTP endpoints, optional (HTTP_PORT): the same health code as ``health.connector_feed``.

NATS request/reply stays the primary interface; this serves what the original guide's commands
and orchestrators ask for, with aiohttp's server:

- ``GET /ws/health``: the seed's shape exactly, ``{"connector": {connected, last_ts, queue_size,
  reconnection_attempts, connector_health: {connected, subscribed_trades, subscribed_depth,
  event_counter}}}`` for every connector (``seed_health``);
- ``GET /metrics``: the seed's shape, ``{"trades": {per_minute_count, per_second_rate,
  queue_size}, "depth": {...}}`` (JSON, as in the guide; Prometheus metrics go through OTLP);
- ``GET /health``: the whole health report, as ``health.connector_feed`` answers it (status,
  reasons with their causes, every section);
- ``GET /livez``: 200 while the process's event loop answers;
- ``GET /readyz``: 200 while the feed is ``ok`` or ``degraded``, 503 when ``down`` (body: status
  and reasons).

It listens on HTTP_HOST (loopback unless set) without authentication; no secret is in any answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from services.common.health import HealthService
from services.common.lifecycle import FatalError
from services.common.logging import get_logger

log = get_logger("connector_feed")


def _subscribed(value: object, default: bool) -> bool:
    """The seed's ``subscribed_*`` flag from what a connector reports (a flag, or its symbols)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple | set | frozenset | dict):
        return len(value) > 0
    return default


def _count(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def seed_health(report: dict[str, Any], events_received: int) -> dict[str, Any]:
    """The seed's ``/ws/health`` document from a health report: exactly its keys, its types.

    ``connector_health`` comes from the connector's own health where it has the seed's fields
    (a list of symbols counts as subscribed, and nothing is while it is not connected); where it
    has not, from what the feed knows: it subscribes every stream on every connect, and it
    counted ``events_received`` from the connector."""
    section = report.get("connector") or {}
    venue = section.get("connector_health") or {}
    connected = bool(section.get("connected", False))
    venue_connected = venue.get("connected")
    venue_connected = venue_connected if isinstance(venue_connected, bool) else connected
    return {
        "connector": {
            "connected": connected,
            "last_ts": section.get("last_ts"),
            "queue_size": _count(section.get("queue_size"), 0),
            "reconnection_attempts": _count(section.get("reconnection_attempts"), 0),
            "connector_health": {
                "connected": venue_connected,
                # Nothing is subscribed while the venue is out of reach, whatever is configured.
                "subscribed_trades": venue_connected and _subscribed(venue.get("subscribed_trades"), True),
                "subscribed_depth": venue_connected and _subscribed(venue.get("subscribed_depth"), True),
                "event_counter": _count(venue.get("event_counter"), events_received),
            },
        }
    }


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class HttpApi:
    def __init__(
        self, health: HealthService, events_received: Callable[[], int], host: str, port: int
    ) -> None:
        """``events_received``: how many events the feed took from the connector (seed fallback)."""
        self.health = health
        self._events_received = events_received
        self.host = host
        self.port = port
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/ws/health", self._ws_health)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/livez", self._livez)
        self.app.router.add_get("/readyz", self._readyz)

    async def start(self) -> None:
        """Listen, or ``FatalError`` naming the setting when the address cannot be used."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise FatalError(
                f"HTTP_HOST={self.host} HTTP_PORT={self.port}: cannot listen there: "
                f"{error.strerror or error} (choose another HTTP_PORT, or unset it to serve no HTTP)"
            ) from None
        self._runner = runner
        log.info("http_listening", url=f"http://{self.host}:{self.port}", endpoints=self.endpoints())

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def section(self) -> dict[str, Any]:
        """Health's ``http`` section: where it listens, requests answered (probes not counted)."""
        return {"url": f"http://{self.host}:{self.port}", "requests": self.requests}

    def endpoints(self) -> list[str]:
        return sorted({r.resource.canonical for r in self.app.router.routes() if r.resource is not None})

    async def _ws_health(self, _: web.Request) -> web.Response:
        self.requests += 1
        return _json(seed_health(self.health.report(), self._events_received()))

    async def _metrics(self, _: web.Request) -> web.Response:
        self.requests += 1
        return _json(self.health.stats())

    async def _health(self, _: web.Request) -> web.Response:
        self.requests += 1
        return _json(self.health.report())

    async def _livez(self, _: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        report = self.health.report()
        ready = report["status"] != "down"
        return _json({"status": report["status"], "reasons": report["reasons"]}, 200 if ready else 503)
