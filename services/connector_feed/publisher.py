"""The publishing half of the feed: queued events -> exact contract bytes -> NATS.

``md.<SYMBOL>.trades`` / ``.depth`` without headers for the unsampled majority; a traced event gets
a PRODUCER span and ``traceparent``, a lag sample gets its publish time (``Md-Publish-Ns``);
``Status`` changes go to ``md.<SYMBOL>.status``.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from opentelemetry import trace

from schemas import Status, rules, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import LogSampler, get_logger
from services.connector_feed.events import Event, Trade
from services.connector_feed.metrics import LAG_SAMPLE_EVERY, FeedLagHistograms
from services.connector_feed.queue import Queued

log = get_logger("connector_feed")


class Publisher:
    def __init__(self, bus: Bus, tracer: trace.Tracer, lags: FeedLagHistograms) -> None:
        self.bus = bus
        self._publish = bus.nc.publish  # bound once: the hot path calls nats-py directly
        self._tracer = tracer
        self.lags = lags
        self.published = {"trade": 0, "depth": 0}
        self.published_by_key: dict[tuple[str, str, str], int] = {}
        self.publish_errors = 0
        self.publish_errors_by_reason: dict[str, int] = {}
        self.statuses: dict[str, str] = {}  # symbol -> the last published state
        self.status_reasons: dict[str, str] = {}  # symbol -> why (the last Status's reason)
        self._log_sampler = LogSampler()
        self._subjects: dict[tuple[str, str], str] = {}
        self._sent = 0

    async def publish(self, item: Queued) -> bool:
        """Publish one queued item; False (counted, a log sample) if NATS would not take it."""
        if type(item) is Status:
            return await self._publish_status(item)
        event = cast(Event, item)
        kind = "trade" if type(event) is Trade else "depth"
        try:
            subject = self._subjects.get((kind, event.symbol)) or self._subject(kind, event.symbol)
            payload = event.wire()
            self._sent += 1
            lag_sample = self._sent % LAG_SAMPLE_EVERY == 0
            if event.trace is None and not lag_sample:
                await self._publish(subject, payload)  # the common case: no headers at all
            else:
                await self._publish_with_headers(event, kind, subject, payload, lag_sample)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # per-message boundary: count, log a sample, keep going
            self._failed(kind, error)
            return False
        self.published[kind] += 1
        key = (kind, event.exchange, event.symbol)
        self.published_by_key[key] = self.published_by_key.get(key, 0) + 1
        return True

    async def publish_all(self, items: list[Queued]) -> None:
        """Publish items in order (failures counted)."""
        for item in items:
            await self.publish(item)

    def _failed(self, kind: str, error: Exception) -> None:
        self.publish_errors += 1
        reason = type(error).__name__
        self.publish_errors_by_reason[reason] = self.publish_errors_by_reason.get(reason, 0) + 1
        suppressed = self._log_sampler.allow(reason)
        if suppressed is not None:
            log.warning(
                "publish_failed",
                kind=kind,
                error=rules.clip(repr(error), 200),
                errors=self.publish_errors,
                suppressed=suppressed,
            )

    async def _publish_with_headers(
        self, event: Event, kind: str, subject: str, payload: bytes, lag_sample: bool
    ) -> None:
        """A traced message (PRODUCER span + traceparent) and/or a lag sample (publish time)."""
        headers: dict[str, str] = {}
        now = time.time_ns()
        if lag_sample:
            headers[messaging.PUBLISH_NS_HEADER] = str(now)
            self.lags.receive_to_publish(event, kind, now)
        if event.trace is None:
            await self.bus.publish(subject, payload, headers)
            return
        template = subjects.TRADES_TEMPLATE if kind == "trade" else subjects.DEPTH_TEMPLATE
        span = messaging.producer(
            self._tracer,
            subject,
            template,
            len(payload),
            event.trace,
            headers,
            exchange=event.exchange,
            symbol=event.symbol,
        )
        try:
            await self.bus.publish(subject, payload, headers)
        except Exception as error:
            messaging.fail(span, error)
            raise
        finally:
            span.end()

    async def _publish_status(self, status: Status) -> bool:
        try:
            await self.bus.publish(subjects.status(status.symbol), status.to_json())
        except asyncio.CancelledError:
            raise
        except Exception as error:  # per-message boundary
            self._failed("status", error)
            return False
        self.statuses[status.symbol] = status.state
        self.status_reasons[status.symbol] = status.reason
        log.info(
            "md_status", symbol=status.symbol, state=status.state, stream=status.stream, reason=status.reason
        )
        return True

    def _subject(self, kind: str, symbol: str) -> str:
        key = (kind, symbol)
        subject = self._subjects.get(key)
        if subject is None:
            subject = self._subjects[key] = (
                subjects.trades(symbol) if kind == "trade" else subjects.depth(symbol)
            )
        return subject
