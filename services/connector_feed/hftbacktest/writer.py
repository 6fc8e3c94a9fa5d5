"""The thread that turns market-data messages into hftbacktest files (``hftfeed record-npz``).

``submit`` never blocks: it puts the raw message on a bounded queue (full: dropped and counted, a
sampled log line). The thread decodes each message (``TradeTick`` / ``DepthUpdate``; anything else
is counted as invalid), keeps the symbol's book (``OrderBook``, for the end-of-day snapshot),
encodes rows, and every ``flush_every_s`` writes what it has as a chunk (see ``files``). A row
belongs to the UTC day of its ``local_ts``; a day ends when a row of a later day arrives, when the
wall clock is past the day and the symbol has been quiet for ``ROTATE_GRACE_S``, and at ``close``.
``local_ts`` is ``ts_recv``, except that it never goes back within one stream (a symbol's trades,
or its depth) nor before the day being written: such a row takes the time of its predecessor
(counted as ``clamped_local_ts``), so the depth keeps the order it was published in. Trades and
depth arrive through two subscriptions, not interleaved as published: ``files`` orders the rows
by ``local_ts`` when it assembles a day.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.common.book import OrderBook
from services.common.logging import get_logger
from services.connector_feed.events import Depth, Trade
from services.connector_feed.hftbacktest.encode import (
    MessageRejected,
    Row,
    book_from_rows,
    decode_message,
    depth_rows,
    trade_row,
)
from services.connector_feed.hftbacktest.files import DayFiles, day_of, recover
from services.connector_feed.hftbacktest.format import EVENT_DTYPE, HbtDataError

log = get_logger("record_npz")

ROTATE_GRACE_S = 2.0
DAY_NS = 86_400 * 1_000_000_000
_STOP = object()


@dataclass
class WriterStats:
    trades: int = 0
    depth: int = 0
    snapshots: int = 0
    rows: int = 0
    invalid: int = 0
    dropped: int = 0
    clamped_local_ts: int = 0
    negative_latency: int = 0
    deltas_before_snapshot: int = 0
    chunks: int = 0
    files: int = 0
    errors: int = 0
    recovered: int = 0
    by_symbol: dict[str, int] = field(default_factory=dict)


class _Lane:
    """One (exchange, symbol): its open day, unwritten rows and book."""

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange, self.symbol = exchange, symbol
        self.files: DayFiles | None = None
        self.rows: list[Row] = []
        self.chunk = 1
        self.book = OrderBook()
        self.synced = False
        self.last_local = {True: 0, False: 0}  # per stream (trades: True): local_ts never goes back
        self.floor = 0  # ...nor before the start of the day being written
        self.resumed = False  # whether this run has taken over the book the files leave off with
        self.last_arrival = 0.0  # monotonic


class NpzWriter:
    def __init__(self, root: Path, flush_every_s: float = 1.0, max_queue: int = 100_000) -> None:
        self.root = Path(root)
        self.flush_every_s = flush_every_s
        self.stats = WriterStats()
        self._queue: queue.Queue[tuple[bool, bytes] | object] = queue.Queue(maxsize=max_queue)
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self.stats.recovered = len(recover(self.root))
        self._thread = threading.Thread(target=self._run, name="record-npz", daemon=True)
        self._thread.start()

    def submit(self, is_trade: bool, payload: bytes) -> None:
        """Queue one message (never blocks: a full queue drops it, counted)."""
        try:
            self._queue.put_nowait((is_trade, payload))
        except queue.Full:
            self.stats.dropped += 1
            if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 10_000 == 0:
                log.error("npz_dropped_messages", dropped=self.stats.dropped, reason="the disk is behind")

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout_s: float = 120.0) -> None:
        """Write everything queued, assemble every open day (its .npz and _eod.npz), stop."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*/*.npz"))

    # ---- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_every_s
        while True:
            try:
                item = self._queue.get(timeout=max(next_flush - time.monotonic(), 0.005))
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if isinstance(item, tuple):
                self._guarded(self._message, *item)
            if time.monotonic() >= next_flush:
                self._guarded(self._flush_all, time.time_ns())
                next_flush = time.monotonic() + self.flush_every_s
        for lane in self._lanes.values():
            self._guarded(self._close_day, lane)

    def _guarded(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except (OSError, HbtDataError, ValueError) as error:  # the disk, or a file we cannot read
            self.stats.errors += 1
            if self.stats.errors <= 10 or self.stats.errors % 1000 == 0:
                log.error("npz_write_failed", error=repr(error), errors=self.stats.errors)

    def _message(self, is_trade: bool, payload: bytes) -> None:
        try:
            event = decode_message(is_trade, payload)
        except MessageRejected:
            self.stats.invalid += 1
            return
        key = (event.exchange, event.symbol)
        lane = self._lanes.get(key) or self._lanes.setdefault(key, _Lane(*key))
        local_ts = max(event.ts_recv, lane.last_local[is_trade], lane.floor)
        if local_ts != event.ts_recv:
            self.stats.clamped_local_ts += 1
        if local_ts < event.ts_event:
            self.stats.negative_latency += 1
        day = day_of(local_ts)
        if lane.files is None or lane.files.day != day:
            self._close_day(lane)
            self._open_day(lane, day)
        lane.last_local[is_trade] = local_ts
        lane.last_arrival = time.monotonic()
        if type(event) is Trade:
            lane.rows.append(trade_row(event, local_ts))
            self.stats.trades += 1
        else:
            assert isinstance(event, Depth)
            self._depth(lane, event, local_ts)
        self.stats.by_symbol[event.symbol] = self.stats.by_symbol.get(event.symbol, 0) + 1

    def _depth(self, lane: _Lane, event: Depth, local_ts: int) -> None:
        if event.is_snapshot:
            lane.book.reset(event.bids, event.asks, event.last_update_id)
            lane.synced = True
            self.stats.snapshots += 1
        else:
            if not lane.synced and lane.book.is_empty:
                self.stats.deltas_before_snapshot += 1
                if self.stats.deltas_before_snapshot == 1:
                    log.warning("npz_deltas_before_snapshot", symbol=lane.symbol)
            lane.book.apply(event.bids, event.asks, event.last_update_id)
        lane.rows.extend(depth_rows(event, local_ts))
        self.stats.depth += 1

    def _open_day(self, lane: _Lane, day: str) -> None:
        files = DayFiles(self.root, lane.exchange, lane.symbol, day)
        chunks = files.resume()
        if chunks or not lane.resumed:  # a restart: the day so far, on the book we left it with
            lane.book = book_from_rows(chunks, lane.book if lane.resumed else files.start_book())
            lane.synced = lane.synced or not lane.book.is_empty
            for rows in chunks:
                if len(rows):
                    latest = int(rows["local_ts"].max())
                    lane.last_local = {kind: max(ts, latest) for kind, ts in lane.last_local.items()}
        lane.resumed = True
        lane.floor = max(
            lane.floor, int(datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).timestamp()) * 10**9
        )
        lane.files, lane.chunk, lane.rows = files, files.next_chunk(), []

    def _close_day(self, lane: _Lane) -> None:
        if lane.files is None:
            return
        self._flush(lane)
        rows = lane.files.assemble(lane.book)
        self.stats.files += 1
        log.info("npz_day_written", file=str(lane.files.final), rows=rows)
        lane.files = None

    def _flush_all(self, now_ns: int) -> None:
        midnight = now_ns - now_ns % DAY_NS
        today = day_of(now_ns)
        quiet_since = time.monotonic() - ROTATE_GRACE_S
        for lane in self._lanes.values():
            if lane.files is not None and lane.files.day < today and lane.last_arrival < quiet_since:
                self._close_day(lane)  # a quiet symbol's day still ends; late rows go to the new one
                lane.floor = max(lane.floor, midnight)
            else:
                self._flush(lane)

    def _flush(self, lane: _Lane) -> None:
        if not lane.rows or lane.files is None:
            return
        rows = np.array(lane.rows, dtype=EVENT_DTYPE)
        lane.files.write_chunk(lane.chunk, rows)
        lane.chunk += 1
        lane.rows = []
        self.stats.chunks += 1
        self.stats.rows += len(rows)
