"""connector_feed metrics over OTLP (names: OpenTelemetry messaging conventions, and ``md.*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import Meter

from schemas import subjects
from services.common.instruments import (
    LAG_SAMPLE_EVERY,
    messaging_attributes,
    observable_counter,
    observable_gauge,
)
from services.connector_feed.events import Event

if TYPE_CHECKING:
    from services.connector_feed.stream import HFTConnectorStream

SERVICE = "connector_feed"
__all__ = ["LAG_SAMPLE_EVERY", "FeedLagHistograms", "register_feed_metrics"]


class FeedLagHistograms:
    """md.lag.exchange_to_receive and md.lag.receive_to_publish, fed with sampled events."""

    def __init__(self, meter: Meter) -> None:
        self._exchange_to_receive = meter.create_histogram(
            "md.lag.exchange_to_receive", unit="s", description="venue event time -> the feed's receipt"
        )
        self._receive_to_publish = meter.create_histogram(
            "md.lag.receive_to_publish", unit="s", description="the feed's receipt -> NATS publish"
        )

    def exchange_to_receive(self, event: Event, kind: str) -> None:
        self._exchange_to_receive.record(
            max(event.ts_recv - event.ts_event, 0) / 1e9,
            {"type": kind, "exchange": event.exchange, "symbol": event.symbol},
        )

    def receive_to_publish(self, event: Event, kind: str, published_ns: int) -> None:
        self._receive_to_publish.record(
            max(published_ns - event.ts_recv, 0) / 1e9,
            {"type": kind, "exchange": event.exchange, "symbol": event.symbol},
        )


def _by_key(counts: dict[tuple[str, str, str], int]) -> list[tuple[float, dict[str, Any]]]:
    return [(n, {"type": k, "exchange": e, "symbol": s}) for (k, e, s), n in list(counts.items())]


def register_feed_metrics(meter: Meter, stream: HFTConnectorStream) -> None:
    def sent() -> list[tuple[float, dict[str, Any]]]:
        return [
            (stream.published["trade"], messaging_attributes(subjects.TRADES_TEMPLATE, SERVICE)),
            (stream.published["depth"], messaging_attributes(subjects.DEPTH_TEMPLATE, SERVICE)),
        ]

    def dropped() -> list[tuple[float, dict[str, Any]]]:
        return [
            (n, {"type": k, "exchange": e, "symbol": s, "reason": r})
            for (k, e, s, r), n in list(stream.dropped.by_key.items())
        ]

    def rejected() -> list[tuple[float, dict[str, Any]]]:
        return [
            (n, {"type": k, "exchange": e, "symbol": s, "reason": r})
            for (k, e, s, r), n in list(stream.rejected_by_key.items())
        ]

    exchange = stream.connector.exchange
    observable_counter(meter, "messaging.client.sent.messages", sent, "{message}", "messages published")
    observable_counter(
        meter,
        "md.events.received",
        lambda: _by_key(stream.received_by_key),
        description="events received from the connector",
    )
    observable_counter(
        meter,
        "md.events.published",
        lambda: _by_key(stream.published_by_key),
        description="events published on NATS",
    )
    observable_counter(meter, "md.events.dropped", dropped, description="events dropped (queue overflow ...)")
    observable_counter(meter, "md.events.rejected", rejected, description="bad connector events rejected")
    observable_gauge(
        meter,
        "md.queue.size",
        lambda: [(len(stream.queue), {"service": SERVICE})],
        "{event}",
        "events waiting between connector and NATS",
    )

    observable_counter(
        meter,
        "md.connector.reconnects",
        lambda: [(stream.connector.counters().reconnects, {"exchange": exchange})],
        "{reconnect}",
        "connector reconnects",
    )
    observable_counter(
        meter,
        "md.connector.errors",
        lambda: [
            (n, {"exchange": exchange, "kind": k}) for k, n in stream.connector.counters().errors.items()
        ],
        "{error}",
        "connector errors by kind: connection, malformed frames, rate limits, trade gaps ...",
    )

    def resyncs() -> list[tuple[float, dict[str, Any]]]:
        venue: list[tuple[float, dict[str, Any]]] = [
            (n, {"exchange": exchange, "symbol": s, "source": "venue"})
            for s, n in stream.connector.counters().resyncs.items()
        ]
        repairs: list[tuple[float, dict[str, Any]]] = [
            (n, {"exchange": exchange, "symbol": s, "source": "feed"})
            for s, n in list(stream.dropped.resyncs.items())
        ]
        return venue + repairs

    observable_counter(
        meter,
        "md.book.resyncs",
        resyncs,
        "{resync}",
        "books rebuilt: from a venue snapshot (source=venue) or by the feed after a lost message (feed)",
    )
    observable_counter(
        meter,
        "md.book.gaps",
        lambda: [
            (n, {"exchange": exchange, "symbol": s}) for s, n in stream.connector.counters().gaps.items()
        ],
        "{gap}",
        "update-id gaps the connector detected at the venue (each resyncs that book)",
    )
