"""``HFTConnectorStream``: the feed's pipeline, connector batches -> checked events -> NATS, in order.

It is the ``FeedSink`` a connector delivers to. ``deliver`` takes everything parsed from one
frame, accepts each item (a native connector's validated ``Trade`` / ``Depth``, a seed-format
dict or contract from a polling connector, normalised here, or a ``Status``), sequences it on its
lane, keeps the book of symbols whose connector keeps none, and queues it; then, when no one else
is publishing, it publishes the queue right away in the caller's task (no hand-off, no sleep). The
queue is bounded by backpressure, not by loss: ``deliver`` returns only once the queue is below
``max_queue``, so a connector reads its socket no faster than the feed publishes. A publish that
fails (NATS unreachable past nats-py's buffer) is the one loss left: it is counted in health's
``dropped`` and the metrics, and the next depth message of that symbol is a snapshot of the feed's
book, announced by a ``Status``.

Per event the hot path does one lane lookup, a seq, a queue append and, when publishing, one
nats-py call; counters are the lanes', read when asked. Sampled events (traced, or one lag sample
per ``LAG_SAMPLE_NS`` of receipt time) take the slower ``Publisher`` path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from schemas import Status, subjects
from services.common import messaging
from services.common.bus import Bus
from services.common.logging import LogSampler, debug_enabled, get_logger
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry
from services.connector_feed.books import FeedBooks
from services.connector_feed.connector import ConnectorGaveUp, Delivered, NativeConnector
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.lanes import Lane, LaneRates, Lanes
from services.connector_feed.metrics import FeedLagHistograms
from services.connector_feed.normalize import EventRejected, Normalizer
from services.connector_feed.publisher import Publisher
from services.connector_feed.queue import Drops, Queued
from services.connector_feed.stream_views import StreamViews

log = get_logger("connector_feed")

#: A drain that keeps finding work yields to the loop this often (messages).
DRAIN_YIELD_EVERY = 128
#: At most one lag sample (both lag histograms, and ``Md-Publish-Ns`` for consumers) per this much
#: receipt time: 20 a second under load (1,200 a minute for the percentiles), every event of a quiet
#: symbol. An SDK histogram record costs 8-40 us (measured: locks, exemplars, cold caches between
#: samples), so sampling by count would tax a busy feed and starve a quiet one.
LAG_SAMPLE_NS = 50_000_000
RATES_SYNC_S = 1.0


def new_feed_run() -> str:
    """A new run id: when it started (UTC, readable, sortable) and 8 random hex digits."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


class HFTConnectorStream(StreamViews):
    def __init__(
        self,
        connector: NativeConnector,
        bus: Bus,
        max_queue: int,
        connector_label: str = "hft",
        telemetry: Telemetry | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.connector = connector
        self.bus = bus
        self.label = connector_label
        self.max_queue = max_queue
        self._low_water = max_queue // 2
        self.instruments = frozenset(connector.instruments())
        #: This run's id on every message (schemas.models.SEQUENCE_RULE), and the last seq per subject.
        self.feed_run = new_feed_run()
        self.lanes = Lanes()
        for symbol in sorted(self.instruments):
            self._add_lanes(symbol)
        self.rates = LaneRates(self.lanes)
        self.normalizer = Normalizer(connector.exchange, sorted(self.instruments))
        self.books = FeedBooks()  # for symbols whose connector keeps no book of its own
        self.queue: deque[Queued] = deque()
        self.dropped = Drops()
        self._repairs: dict[str, Depth] = {}  # the last repair snapshot queued per symbol
        self._room = asyncio.Event()
        self._room.set()
        self._full = False  # a deliverer waits for room
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        self.gave_up = False
        self.last_event_ns: int | None = None  # receipt time (wall clock) of the newest event
        self.rejected: dict[str, int] = {}
        self.rejected_by_key: dict[tuple[str, str, str, str], int] = {}
        self.symbol_states: dict[str, tuple[str, str]] = {}
        self._log_sampler = LogSampler()
        self.telemetry = telemetry or setup_telemetry(
            "connector_feed", TelemetrySettings(otel_sdk_disabled=True)
        )
        self._tracer = self.telemetry.tracer()
        self.lags = FeedLagHistograms(self.telemetry.meter())
        self._next_lag_ns = 0
        self._trace_countdown = self.telemetry.gap()  # 0: tracing off (counts below zero, never hits 0)
        self.publisher = Publisher(bus, self._tracer, self.lags)

    def _add_lanes(self, symbol: str) -> None:
        exchange = self.connector.exchange
        self.lanes.add("trade", exchange, symbol)
        self.lanes.add("depth", exchange, symbol, feed_keeps_book=self.connector.book(symbol) is None)

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Let the connector deliver until cancelled (or until it gives up: ``ConnectorGaveUp``)."""
        ticker = asyncio.create_task(self._sync_rates(), name="feed-rates")
        try:
            await self.connector.run(self)
        except ConnectorGaveUp:
            self.gave_up = True
            raise
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            if self._drainer is not None:
                await asyncio.gather(self._drainer, return_exceptions=True)

    async def _sync_rates(self) -> None:
        while True:
            await asyncio.sleep(RATES_SYNC_S)
            self.rates.sync()

    async def close(self) -> None:
        """Stop the connector (fast, lossless) and publish everything it delivered."""
        try:
            await self.connector.close()
        except Exception as error:  # shutdown boundary: what was received is still published
            log.warning("connector_close_failed", connector=self.label, error=repr(error))
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._draining = False
        await self._drain()

    # ---- the sink --------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Delivered]) -> None:
        """One frame's events: accepted, then published now unless someone else is publishing."""
        self._accept_all(batch)
        if not self._draining:
            await self._drain()
        elif len(self.queue) >= self.max_queue:
            await self.room()

    def put(self, batch: Sequence[Delivered]) -> bool:
        """One frame's events from a callback that cannot await (picows' frame callback): accepted,
        and published right here when nobody else is publishing (``_publish_now``)."""
        self._accept_all(batch)
        if not self._draining and self.queue:
            self._publish_now()
        return len(self.queue) < self.max_queue

    def _publish_now(self) -> None:
        """Publish the queue in the caller's turn of the loop, without a task: nats-py's ``publish``
        appends to its buffer and returns without waiting unless that buffer is full, so each
        publish coroutine (``_drain``'s, the same calls) is driven here, one step. Saves a loop
        turn (a drain task woken per frame) on every frame of the Binance path. A publish that
        must wait (for nats-py's flusher) and whatever follows it go on in the drain task, in
        order: an item leaves the queue only once nats-py has it."""
        queue, publisher = self.queue, self.publisher
        trade_lanes, depth_lanes = self.lanes.trades, self.lanes.depth
        nc_publish = self.bus.nc.publish
        while queue:
            item = queue[0]
            kind = type(item)
            lane: Lane | None = None
            if kind is Trade or kind is Depth:
                event: Event = item  # type: ignore[assignment]
                lane = (trade_lanes if kind is Trade else depth_lanes)[event.symbol]
                publishing: Coroutine[Any, Any, object] = (
                    publisher.publish_sampled(event, lane.kind, lane.subject)
                    if event.sampled
                    else nc_publish(lane.subject, event.wire())
                )
            else:
                publishing = publisher.publish_status(item)  # type: ignore[arg-type]  # never raises
            try:
                waiting_on = publishing.send(None)
            except StopIteration:  # done: in nats-py's buffer
                queue.popleft()
                if lane is not None:
                    lane.published += 1
                continue
            except Exception as error:  # per-message boundary, as in _drain
                queue.popleft()
                if lane is not None:
                    publisher.failed(lane.kind, error)
                    self._lost(event)
                continue
            # nats-py waits for its flusher (its buffer is full): that publish ends, then the rest
            # follows, in the drain task; till then the stream counts as publishing (``put`` queues).
            self._draining = True
            self._drainer = asyncio.create_task(
                self._finish_publish(publishing, waiting_on, lane), name="feed-drain"
            )
            return
        if self._full:
            self._full = False
            self._room.set()

    async def _finish_publish(
        self, publishing: Coroutine[Any, Any, object], waiting_on: object, lane: Lane | None
    ) -> None:
        """Drive a publish ``_publish_now`` started to its end (resuming it each time what it waits
        on is done, as a task would), count it, then publish the rest of the queue (``_drain``)."""
        item = self.queue[0]
        try:
            while True:
                if isinstance(waiting_on, asyncio.Future):
                    await asyncio.wait((waiting_on,))  # done or failed: the publish itself sees which
                else:
                    await asyncio.sleep(0)  # a bare yield
                waiting_on = publishing.send(None)
        except StopIteration:
            self.queue.popleft()
            if lane is not None:
                lane.published += 1
        except asyncio.CancelledError:  # shutdown: the message is in nats-py's buffer, which drains
            publishing.close()
            self.queue.popleft()
            if lane is not None:
                lane.published += 1
            self._draining = False
            raise
        except Exception as error:
            self.queue.popleft()
            if lane is not None:
                self.publisher.failed(lane.kind, error)
                self._lost(item)  # type: ignore[arg-type]
        self._draining = False
        await self._drain()

    async def room(self) -> None:
        while len(self.queue) >= self.max_queue:
            self._full = True
            self._room.clear()
            await self._room.wait()

    async def _drain(self) -> None:
        """Publish the queue, oldest first; an item leaves the queue only once it is handed to
        nats-py, so a cancelled drain (shutdown) loses nothing: ``close`` publishes the rest.

        The common case - market data neither traced nor a lag sample - is published right here
        (subject from its lane, the contract's bytes, one nats-py call); the rest through
        ``Publisher``."""
        if self._draining:
            return
        self._draining = True
        queue, publisher = self.queue, self.publisher
        trade_lanes, depth_lanes = self.lanes.trades, self.lanes.depth
        nc_publish = self.bus.nc.publish
        task = asyncio.current_task()
        since_yield = 0
        try:
            while queue:
                item = queue[0]
                kind = type(item)
                if kind is Trade or kind is Depth:
                    event: Event = item  # type: ignore[assignment]
                    lane = (trade_lanes if kind is Trade else depth_lanes)[event.symbol]
                    try:
                        if event.sampled:
                            await publisher.publish_sampled(event, lane.kind, lane.subject)
                        else:
                            await nc_publish(lane.subject, event.wire())
                    except asyncio.CancelledError:
                        raise
                    except Exception as error:  # per-message boundary: counted, a log sample
                        queue.popleft()
                        publisher.failed(lane.kind, error)
                        self._lost(event)
                    else:
                        queue.popleft()
                        lane.published += 1
                else:
                    await publisher.publish_status(item)  # type: ignore[arg-type]
                    queue.popleft()
                if self._full and len(queue) <= self._low_water:
                    self._full = False
                    self._room.set()
                since_yield += 1
                if since_yield >= DRAIN_YIELD_EVERY:
                    since_yield = 0
                    self._honour_cancel(task)
                    if queue:  # let the loop run (nats-py's flusher writes, health answers)
                        await asyncio.sleep(0)
            self._honour_cancel(task)
        finally:
            self._draining = False
            self._full = False
            self._room.set()

    @staticmethod
    def _honour_cancel(task: asyncio.Task[object] | None) -> None:
        """nats-py's publish can swallow a cancellation (its flush catches CancelledError): honour it
        (what was published is in nats-py's buffer), or a stopping reader reads on."""
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    def _lost(self, event: Event) -> None:
        """A message NATS would not take: counted; a symbol's lost depth is repaired by a snapshot
        of the feed's book (which already holds every depth event accepted), replacing the
        symbol's queued depth, and announced by a ``Status``."""
        self.dropped.count(event, "publish_failed")
        if type(event) is not Depth:
            return
        symbol = event.symbol
        if self._repairs.get(symbol) is event:  # the repair itself would not go: no loop of snapshots
            self.dropped.resyncs[symbol] = self.dropped.resyncs.get(symbol, 0) + 1
            self.queue.append(
                Status(
                    exchange=event.exchange,
                    symbol=symbol,
                    stream="depth",
                    state="resyncing",
                    reason="a depth message and its repair snapshot were lost: "
                    f"the book is on request at {subjects.book(symbol)}",
                    ts=time.time_ns(),
                )
            )
            return
        stale = [e for e in self.queue if type(e) is Depth and e.symbol == symbol]
        if stale:
            self.dropped.count(event, "superseded_by_snapshot", len(stale))
            kept = [e for e in self.queue if not (type(e) is Depth and e.symbol == symbol)]
            self.queue.clear()
            self.queue.extend(kept)
        snapshot = self.book_snapshot(symbol)
        self.dropped.resyncs[symbol] = self.dropped.resyncs.get(symbol, 0) + 1
        state, reason = ("live", "a depth message was lost: this snapshot replaces the book")
        if snapshot is None:
            state, reason = "resyncing", "a depth message was lost and the feed holds no book to repair it"
        self.queue.append(
            Status(
                exchange=event.exchange,
                symbol=symbol,
                stream="depth",
                state=state,
                reason=reason,
                ts=time.time_ns(),
            )
        )
        if snapshot is not None:
            self._sequence(snapshot)
            self._repairs[symbol] = snapshot
            self.queue.append(snapshot)

    # ---- accepting -------------------------------------------------------------------------

    def _accept_all(self, batch: Sequence[Delivered]) -> None:
        """Sequence and queue a batch: the per-event work is here, with the state in locals."""
        trade_lanes, depth_lanes = self.lanes.trades, self.lanes.depth
        queue, feed_run = self.queue, self.feed_run
        countdown, next_lag = self._trace_countdown, self._next_lag_ns
        last_ns, decided = 0, False
        for item in batch:
            kind = type(item)
            if kind is Trade:
                event: Event = item  # type: ignore[assignment]
                lane = trade_lanes.get(event.symbol)
            elif kind is Depth:
                event = item  # type: ignore[assignment]
                lane = depth_lanes.get(event.symbol)
            elif kind is Status:
                self._accept_status(item)  # type: ignore[arg-type]
                continue
            else:  # a polling connector's raw event: normalised, its tracing decided on receipt
                self._trace_countdown = countdown
                normalised = self._normalise(item)
                countdown = self._trace_countdown
                if normalised is None:
                    continue
                event, decided = normalised, True
                lane = (trade_lanes if type(event) is Trade else depth_lanes).get(event.symbol)
            if lane is None:
                self._reject(event, self.normalizer.unknown(event.symbol))
                continue
            ts_recv = last_ns = event.ts_recv
            if decided:
                decided = False
            else:
                countdown -= 1
                if countdown == 0:
                    countdown = self.telemetry.gap()
                    if self.telemetry.within_budget(ts_recv):
                        self._trace(event, ts_recv)
            if ts_recv >= next_lag:
                next_lag = ts_recv + LAG_SAMPLE_NS
                event.sampled = True
                self.lags.exchange_to_receive(event, lane.kind)
            if lane.feed_keeps_book:
                self.books.apply(event)  # type: ignore[arg-type]
            lane.seq += 1  # the event's place in its subject's stream, in order of publication
            event.seq = lane.seq
            event.feed_run = feed_run
            queue.append(event)
        self._trace_countdown, self._next_lag_ns = countdown, next_lag
        if last_ns:
            self.last_event_ns = last_ns
            if debug_enabled():
                for item in batch:
                    if type(item) is Trade or type(item) is Depth:
                        self._log_event(item)

    def _normalise(self, raw: object) -> Event | None:
        """A polling connector's event (seed dict or contract), normalised; None when refused."""
        ts_recv = time.time_ns()
        countdown = self._trace_countdown - 1  # sampling decided before any tracer call
        traced = False
        if countdown == 0:
            self._trace_countdown = self.telemetry.gap()
            traced = self.telemetry.within_budget(ts_recv)
        else:
            self._trace_countdown = countdown
        try:
            event = self.normalizer.normalize(raw, ts_recv)
        except EventRejected as error:
            if traced:
                span = messaging.start_receive(self._tracer, self.label, ts_recv, connector=self.label)
                messaging.fail(span, error)
                span.end()
            self._reject(raw, error)
            return None
        if traced:
            self._trace(event, ts_recv)
        return event

    def _sequence(self, event: Event) -> None:
        """The next ``seq`` of the event's lane (for an event the feed makes itself: a snapshot)."""
        lanes = self.lanes.trades if type(event) is Trade else self.lanes.depth
        lane: Lane = lanes[event.symbol]
        lane.seq += 1
        lane.made += 1
        event.seq = lane.seq
        event.feed_run = self.feed_run

    def _trace(self, event: Event, ts_recv: int) -> None:
        """A sampled event: its receive span (from ts_recv to now) roots its trace."""
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
        event.sampled = True
        span.end()

    def _accept_status(self, status: Status) -> None:
        try:
            self.normalizer.check_status(status)
        except EventRejected as error:
            self._reject(status, error)
            return
        self.symbol_states[status.symbol] = (status.state, status.reason)
        self.queue.append(status)  # state changes are never held back by the queue's bound

    def _reject(self, raw: object, error: EventRejected) -> None:
        """Count a refused event by reason (metric labels: only ids this feed publishes) and log a sample."""
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        symbol = raw.get("symbol") if isinstance(raw, dict) else getattr(raw, "symbol", None)
        key = (
            "depth" if kind in ("depth", "Depth", "DepthUpdate") else "trade",
            self.connector.exchange,
            symbol if isinstance(symbol, str) and symbol in self.instruments else "other",
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

    def publish_snapshot(self, snapshot: Depth) -> None:
        """A snapshot the feed made of its own book: next in its depth stream, published in turn."""
        self._sequence(snapshot)
        self.queue.append(snapshot)
        if not self._draining:
            self._publish_now()

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
