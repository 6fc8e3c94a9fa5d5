"""``HFTConnectorStream``: connector events -> contracts -> NATS.

Two owned tasks joined by a bounded ``EventQueue``: the reader keeps the connector connected
(shared reconnect policy), polls ``next_event``, normalises, keeps the feed's own book per symbol
(so an overflow can be repaired with a snapshot) and queues; the publisher encodes and publishes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from schemas import Status, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import LogSampler, debug_enabled, get_logger
from services.common.rates import RollingCounter, seed_metrics
from services.common.reconnect import Reconnector
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry
from services.connector_feed.books import FeedBooks
from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.metrics import LAG_SAMPLE_EVERY, FeedLagHistograms
from services.connector_feed.normalize import EventRejected, Normalizer
from services.connector_feed.publisher import Publisher
from services.connector_feed.queue import EventQueue

log = get_logger("connector_feed")

#: The reader yields to the loop at least this often, so the publisher keeps up at full speed.
_YIELD_EVERY = 16
#: How often (in events) the reader asks the connector ``is_connected()`` while events flow.
_CHECK_CONNECTED_EVERY = 256


class ConnectorGaveUp(Exception):
    """The connector could not be (re)connected within the reconnect policy's attempts."""


class HFTConnectorStream:
    def __init__(
        self,
        connector: ConnectorWrapper,
        bus: Bus,
        symbols: list[str],
        reconnector: Reconnector,
        max_queue: int,
        poll_interval_s: float,
        connector_label: str = "hft",
        telemetry: Telemetry | None = None,
    ) -> None:
        self.connector = connector
        self.bus = bus
        self.symbols = symbols
        self.reconnector = reconnector
        self.poll_interval_s = poll_interval_s
        self.label = connector_label
        self.normalizer = Normalizer(connector.exchange, connector.published_symbols() or symbols)
        self.books = FeedBooks()
        self.queue = EventQueue(max_queue, self.books.snapshot)
        self.connected = False
        self.gave_up = False
        self.last_event_ns: int | None = None  # receipt time (wall clock) of the newest event
        self.received = {"trade": 0, "depth": 0}
        self.rejected: dict[str, int] = {}
        #: The connector's own last state per symbol (from the Status events it reported).
        self.symbol_states: dict[str, tuple[str, str]] = {}
        self._announced_reconnecting = False
        self._log_sampler = LogSampler()
        # Wall-clock counters fed with each event's receipt time: no extra clock read per event.
        self.trade_rate = RollingCounter(clock=time.time)
        self.depth_rate = RollingCounter(clock=time.time)
        self.connection_errors = 0
        # Metrics: plain integers per (type, exchange, symbol[, reason]), read by observable
        # instruments; lag histograms get one sample in LAG_SAMPLE_EVERY events.
        self.received_by_key: dict[tuple[str, str, str], int] = {}
        self._status_symbols: set[str] = set()  # symbols the connector has reported on (published ids)
        self.rejected_by_key: dict[tuple[str, str, str, str], int] = {}  # type, exchange, symbol, reason
        self.telemetry = telemetry or setup_telemetry(
            "connector_feed", TelemetrySettings(otel_sdk_disabled=True)
        )
        self._tracer = self.telemetry.tracer()
        self.lags = FeedLagHistograms(self.telemetry.meter())
        self._ingested = 0
        self._trace_countdown = self.telemetry.gap()  # 0: tracing off (counts below zero, never hits 0)
        self.publisher = Publisher(bus, self._tracer, self.lags)

    # The publisher's counters, where health, metrics and callers look for them.
    @property
    def published(self) -> dict[str, int]:
        return self.publisher.published

    @property
    def published_by_key(self) -> dict[tuple[str, str, str], int]:
        return self.publisher.published_by_key

    @property
    def statuses(self) -> dict[str, str]:
        return self.publisher.statuses

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and publish until cancelled; raises ``ConnectorGaveUp`` when out of attempts."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._publisher(), name="feed-publisher")
            tasks.create_task(self._reader(), name="feed-reader")

    async def close(self) -> None:
        """Disconnect the connector and publish what is still queued."""
        await self._disconnect()
        await self.publisher.publish_batch(self.queue.pop_all())

    # ---- reader ----------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            await self._connect_with_policy()
            await self._read_until_disconnected()

    async def _connect_with_policy(self) -> None:
        while True:
            try:
                await self.connector.connect()
                for symbol in self.symbols:
                    await self.connector.subscribe_trades(symbol)
                    await self.connector.subscribe_depth(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # connector supervisor boundary: classify as transient
                self.connection_errors += 1
                log.warning(
                    "connector_connection_error",
                    connector=self.label,
                    error=repr(error),
                    attempt=self.reconnector.attempts + 1,
                )
                await self._disconnect()
                await self._backoff()
                continue
            self.connected = True
            self.reconnector.connected()
            if self._announced_reconnecting and not self.symbol_states:
                # A connector that reports no states of its own: say the data flows again.
                self._status_all("live", "reconnected")
            self._announced_reconnecting = False
            log.info(
                "connector_connected",
                connector=self.label,
                symbols=self.symbols,
                exchange=self.connector.exchange,
            )
            return

    async def _backoff(self) -> None:
        delay = self.reconnector.next_delay()
        if delay is None:
            self.gave_up = True
            log.error("connector_gave_up", connector=self.label, attempts=self.reconnector.attempts)
            self._status_all("down", f"gave up after {self.reconnector.attempts} reconnect attempts")
            await self.publisher.publish_batch(self.queue.pop_all())
            raise ConnectorGaveUp(
                f"connector {self.label!r} did not reconnect after {self.reconnector.attempts} attempts"
            )
        log.info(
            "connector_reconnecting",
            connector=self.label,
            attempt=self.reconnector.attempts,
            delay_s=round(delay, 3),
        )
        await asyncio.sleep(delay)

    async def _disconnect(self) -> None:
        self.connected = False
        try:
            await self.connector.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("connector_disconnect_error", connector=self.label, error=repr(error))

    async def _read_until_disconnected(self) -> None:
        connector, poll = self.connector, self.poll_interval_s
        since_yield = since_check = 0
        while True:
            try:
                event = await connector.next_event()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.connection_errors += 1
                log.warning("connector_connection_error", connector=self.label, error=repr(error))
                break
            if event is None:
                if not await connector.is_connected():
                    break
                since_yield = since_check = 0
                await asyncio.sleep(poll)
                continue
            self.ingest(event, time.time_ns())
            since_yield += 1
            since_check += 1
            if since_check >= _CHECK_CONNECTED_EVERY:
                since_check = 0
                if not await connector.is_connected():
                    break
            if since_yield >= _YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)
        log.warning("connector_disconnected", connector=self.label)
        self._status_all("reconnecting", "connection to the venue lost; reconnecting")
        self._announced_reconnecting = True
        await self._disconnect()
        await self._backoff()

    def ingest(self, raw: object, ts_recv: int) -> Event | None:
        """Normalise one connector event, keep the book, queue it. Bad events are counted, not fatal."""
        if type(raw) is Status:  # a connector's state change: published as is
            try:
                self.normalizer.check_status(raw)
            except EventRejected as error:
                self._reject(raw, error)
                return None
            self._status_symbols.add(raw.symbol)
            self.symbol_states[raw.symbol] = (raw.state, raw.reason)
            self.queue.put(raw)
            return None
        countdown = self._trace_countdown - 1  # sampling decided before any tracer call
        if countdown == 0:
            self._trace_countdown = self.telemetry.gap()
            if self.telemetry.within_budget(ts_recv):
                return self._ingest_traced(raw, ts_recv)
            countdown = self._trace_countdown
        self._trace_countdown = countdown
        try:
            event = self.normalizer.normalize(raw, ts_recv)
        except EventRejected as error:
            self._reject(raw, error)
            return None
        self._accept(event, ts_recv)
        return event

    def _ingest_traced(self, raw: object, ts_recv: int) -> Event | None:
        """A sampled event: its receive -> normalise span (from ts_recv to now) roots its trace."""
        try:
            event = self.normalizer.normalize(raw, ts_recv)
        except EventRejected as error:
            span = messaging.start_receive(self._tracer, self.label, ts_recv, connector=self.label)
            messaging.fail(span, error)
            span.end()
            self._reject(raw, error)
            return None
        template = subjects.TRADES_TEMPLATE if type(event) is Trade else subjects.DEPTH_TEMPLATE
        span = messaging.start_receive(
            self._tracer,
            template,
            ts_recv,
            connector=self.label,
            exchange=event.exchange,
            symbol=event.symbol,
        )
        event.trace = trace.set_span_in_context(span)
        span.end()
        self._accept(event, ts_recv)
        return event

    def _accept(self, event: Event, ts_recv: int) -> None:
        self.last_event_ns = ts_recv
        self._status_symbols.add(event.symbol)
        if type(event) is Trade:
            kind = "trade"
            self.received["trade"] += 1
            self.trade_rate.add(1, ts_recv * 1e-9)
        else:
            assert isinstance(event, Depth)
            kind = "depth"
            self.received["depth"] += 1
            self.depth_rate.add(1, ts_recv * 1e-9)
            self.books.apply(event)
        key = (kind, event.exchange, event.symbol)
        self.received_by_key[key] = self.received_by_key.get(key, 0) + 1
        self._ingested += 1
        if self._ingested % LAG_SAMPLE_EVERY == 0:
            self.lags.exchange_to_receive(event, kind)
        self.queue.put(event)
        if debug_enabled():
            self._log_event(event)

    def _reject(self, raw: object, error: EventRejected) -> None:
        """Count a refused event by reason (metric labels: only ids this feed publishes) and log a sample."""
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        kind = raw.get("type") if isinstance(raw, dict) else getattr(raw, "__class__", type(raw)).__name__
        symbol = raw.get("symbol") if isinstance(raw, dict) else getattr(raw, "symbol", None)
        key = (
            "depth" if kind in ("depth", "Depth", "DepthUpdate") else "trade",
            self.connector.exchange,
            symbol if isinstance(symbol, str) and symbol in self.normalizer.symbols else "other",
            error.reason,
        )
        self.rejected_by_key[key] = self.rejected_by_key.get(key, 0) + 1
        suppressed = self._log_sampler.allow(error.reason)
        if suppressed is not None:
            log.warning(
                "connector_depth_parse_error" if key[0] == "depth" else "connector_trade_parse_error",
                connector=self.label,
                reason=error.reason,
                error=error.detail,
                rejected=self.rejected[error.reason],
                suppressed=suppressed,
            )

    def _log_event(self, event: Event) -> None:
        lag_ms = round((event.ts_recv - event.ts_event) / 1e6, 3)
        if type(event) is Trade:
            log.debug(
                "connector_trade",
                connector=self.label,
                symbol=event.symbol,
                price=event.price,
                qty=event.qty,
                side=event.side,
                lag_ms=lag_ms,
                queue_size=len(self.queue),
            )
        else:
            assert isinstance(event, Depth)
            log.debug(
                "connector_depth",
                connector=self.label,
                symbol=event.symbol,
                lag_ms=lag_ms,
                queue_size=len(self.queue),
                bids=len(event.bids),
                asks=len(event.asks),
                is_snapshot=event.is_snapshot,
            )

    # ---- publisher -------------------------------------------------------------------------

    async def _publisher(self) -> None:
        while True:
            await self.queue.wait()
            await self.publisher.publish_batch(self.queue.pop_all())
            await asyncio.sleep(0)

    def _status_all(self, state: str, reason: str) -> None:
        """The connector as a whole changed state: one Status per symbol it has published."""
        known = self._status_symbols or set(self.connector.published_symbols() or self.symbols)
        for symbol in sorted(known):
            self.queue.put(
                Status(
                    exchange=self.connector.exchange,
                    symbol=symbol,
                    stream="all",
                    state=state,
                    reason=reason,
                    ts=time.time_ns(),
                )
            )

    # ---- health ----------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every symbol the connector reports as not live, with its reason (health's reasons)."""
        return [
            f"{symbol} {state}: {reason}"
            for symbol, (state, reason) in sorted(self.symbol_states.items())
            if state != "live"
        ]

    def last_ts_iso(self) -> str | None:
        if self.last_event_ns is None:
            return None
        return datetime.fromtimestamp(self.last_event_ns / 1e9, tz=UTC).isoformat()

    def connector_section(self) -> dict[str, Any]:
        """The seed's ``connector`` health section."""
        try:
            connector_health = self.connector.get_health_status()
        except Exception as error:  # a connector's health bug must not break ours
            connector_health = {"error": repr(error)}
        return {
            "connected": self.connected,
            "last_ts": self.last_ts_iso(),
            "queue_size": len(self.queue),
            "reconnection_attempts": self.reconnector.attempts,
            "connector_health": connector_health,
        }

    def metrics(self) -> dict[str, Any]:
        """The seed's metrics shape: per kind, per_minute_count, per_second_rate, queue_size."""
        return seed_metrics(self.trade_rate, self.depth_rate, self.queue.sizes())
