"""The connector_feed process: settings -> connector -> stream -> NATS, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from schemas import subjects
from services.common.bus import Bus
from services.common.health import Condition, ExtraEndpoint, HealthService, age_s, age_since_ns
from services.common.lifecycle import FatalError, run_until_stopped, start_runtime
from services.common.logging import get_logger
from services.common.telemetry import Telemetry
from services.connector_feed.book_requests import BookRequests
from services.connector_feed.factory import build_connector
from services.connector_feed.http_api import HttpApi
from services.connector_feed.metrics import register_feed_metrics
from services.connector_feed.settings import FeedSettings
from services.connector_feed.status_requests import StatusRequests
from services.connector_feed.stream import HFTConnectorStream

SERVICE = "connector_feed"
log = get_logger(SERVICE)


def down_cause(stream: HFTConnectorStream, bus: Bus) -> str | None:
    """Why the feed is not connected: NATS, or the connector's last connect error (naming the host)."""
    if not bus.is_connected:
        return "the NATS connection is lost (reconnecting)"
    if stream.connected:
        return None
    try:
        return stream.connector.last_error()
    except Exception as error:  # a connector's health bug must not break ours
        return f"(the connector's last_error failed: {error!r})"


def feed_health(
    stream: HFTConnectorStream,
    bus: Bus,
    stale_after_s: float,
    telemetry: Telemetry,
    books: BookRequests | None = None,
    sections: Callable[[], dict[str, Any]] = dict,
) -> HealthService:
    def condition() -> Condition:
        return Condition(
            connected=stream.connected and bus.is_connected,
            gave_up=stream.gave_up,
            last_data_age_s=age_since_ns(stream.last_event_ns),
            stale_after_s=stale_after_s,
            last_drop_age_s=age_s(stream.dropped.last_drop_monotonic),
            problems=tuple(stream.problems()),  # per symbol: reconnecting, stale, resyncing, down
            cause=down_cause(stream, bus),
        )

    def details() -> dict[str, Any]:
        dropped = stream.dropped
        return {
            "connector": stream.connector_section(),
            "published": dict(stream.published),
            "dropped": {"trades": dropped.trades, "depth": dropped.depth, **{"by_reason": dropped.by_reason}},
            "rejected": dict(stream.rejected),
            "feed_run": stream.feed_run,
            "instruments": sorted(stream.instruments),
            "books": None if books is None else books.health(),
            **sections(),
        }

    return HealthService(
        SERVICE,
        "Normalised exchange market data -> md.<SYMBOL>.trades/depth",
        condition,
        details,
        stream.metrics,
        tracer=telemetry.tracer(),
    )


async def run_feed(settings: FeedSettings, stop: asyncio.Event) -> int:
    connector, label = build_connector(settings)
    # Every subject it publishes is built from checked tokens (schemas.subjects, schemas.rules).
    bus, telemetry = await start_runtime(SERVICE, settings, trusted_subjects=True)
    stream = HFTConnectorStream(
        connector, bus, settings.max_queue, connector_label=label, telemetry=telemetry
    )
    register_feed_metrics(telemetry.meter(), stream)
    books = BookRequests(stream)
    statuses = StatusRequests(stream)
    http: HttpApi | None = None

    def sections() -> dict[str, Any]:
        return {"status_requests": statuses.requests, "http": None if http is None else http.section()}

    health = feed_health(stream, bus, settings.health_stale_after_s, telemetry, books, sections)
    await health.start(
        bus, [ExtraEndpoint("book", subjects.BOOK_PATTERN, books.on_request), statuses.endpoint()]
    )
    if settings.http_port is not None:
        http = HttpApi(health, lambda: sum(stream.received.values()), settings.http_host, settings.http_port)
        try:
            await http.start()
        except FatalError:
            await health.stop()
            await bus.drain()
            telemetry.shutdown()
            raise
    log.info(
        "service_started",
        data_source=settings.data_source,
        connector=label,
        symbols=sorted(stream.instruments),
        feed_run=stream.feed_run,
    )
    workers = [asyncio.create_task(stream.run(), name="feed-stream")]
    if settings.md_snapshot_interval_s > 0:
        workers.append(
            asyncio.create_task(
                books.publish_periodically(settings.md_snapshot_interval_s), name="feed-snapshots"
            )
        )
    failure = await run_until_stopped(stop, *workers)
    await stream.close()
    if http is not None:
        await http.stop()
    await health.stop()
    await bus.drain()
    telemetry.shutdown()
    log.info(
        "service_stopped",
        published=stream.published,
        rejected=stream.rejected,
        dropped={"trades": stream.dropped.trades, "depth": stream.dropped.depth},
    )
    if failure is not None:
        raise FatalError(str(failure)) from failure
    return 0
