"""The publishing half of the feed, for what is not the common case.

The feed's drain (``stream``) publishes unsampled market data itself, one nats-py call each. Here:
a sampled event gets its publish time (``Md-Publish-Ns``) and, when traced, a PRODUCER span
and ``traceparent``; ``Status`` changes go to ``md.<SYMBOL>.status``; and every failure is
counted by reason and logged as a sample.
"""

from __future__ import annotations

import asyncio
import time

from opentelemetry import trace

from schemas import Status, rules, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import LogSampler, get_logger
from services.connector_feed.events import Event
from services.connector_feed.metrics import FeedLagHistograms

log = get_logger("connector_feed")


class Publisher:
    def __init__(self, bus: Bus, tracer: trace.Tracer, lags: FeedLagHistograms) -> None:
        self.bus = bus
        self._tracer = tracer
        self.lags = lags
        self.publish_errors = 0
        self.publish_errors_by_reason: dict[str, int] = {}
        self.statuses: dict[str, str] = {}  # symbol -> the last published state
        self.status_reasons: dict[str, str] = {}  # symbol -> why (the last Status's reason)
        self._log_sampler = LogSampler()

    def failed(self, kind: str, error: Exception) -> None:
        """A message NATS would not take: counted by reason, logged as a sample."""
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

    async def publish_sampled(self, event: Event, kind: str, subject: str) -> None:
        """A sampled message: its publish time (``Md-Publish-Ns``, the receive->publish lag) and,
        when traced, a PRODUCER span and ``traceparent``."""
        payload = event.wire()
        now = time.time_ns()
        headers = {messaging.PUBLISH_NS_HEADER: str(now)}
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

    async def publish_status(self, status: Status) -> bool:
        try:
            await self.bus.publish(subjects.status(status.symbol), status.to_json())
        except asyncio.CancelledError:
            raise
        except Exception as error:  # per-message boundary
            self.failed("status", error)
            return False
        self.statuses[status.symbol] = status.state
        self.status_reasons[status.symbol] = status.reason
        log.info(
            "md_status", symbol=status.symbol, state=status.state, stream=status.stream, reason=status.reason
        )
        return True
