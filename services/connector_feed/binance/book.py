"""Binance's "How to manage a local order book correctly", per symbol, to the letter.

Pure state machine, no I/O: diffs go in; out come the DepthUpdates to publish and whether a REST
snapshot is needed. While no snapshot is applied, diffs are buffered (bounded); a snapshot older
than the first buffered event is refused and refetched (spot); buffered events the snapshot already
covers are dropped; then every event must continue the chain - spot: ``U <= last + 1`` (else a gap),
USD-M futures: ``pu == last u`` - and a gap discards the book and starts over for this symbol only.

What subscribers see: after each (re)sync, one ``is_snapshot`` DepthUpdate holding the whole book
as of the first applied diff's ``u``; then one delta per diff (``first_update_id=U``,
``last_update_id=u``, ``prev_last_update_id=pu`` on futures), each continuing the previous one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from services.common.book import OrderBook
from services.connector_feed.binance.parse_depth import DepthDiff, Snapshot
from services.connector_feed.events import Depth

State = Literal["waiting", "synced"]
#: Diffs buffered while a snapshot is fetched (100 ms stream: ~100 s); beyond it, start over.
MAX_BUFFER = 1000


@dataclass
class BookStats:
    resyncs: int = 0  # times the book was (re)built from a snapshot
    gaps: int = 0  # sequence gaps detected
    refetches: int = 0  # snapshots refused as older than the buffered events
    stale_dropped: int = 0  # diffs dropped as already covered
    buffer_overflows: int = 0


@dataclass
class LocalBook:
    exchange: str
    symbol: str
    futures: bool
    state: State = "waiting"
    book: OrderBook = field(default_factory=OrderBook)
    buffer: deque[DepthDiff] = field(default_factory=deque)
    snapshot_wanted: bool = True
    stats: BookStats = field(default_factory=BookStats)
    _base: Snapshot | None = None  # a snapshot waiting for its first straddling diff

    @property
    def synced(self) -> bool:
        return self.state == "synced"

    @property
    def last_update_id(self) -> int | None:
        return self.book.last_update_id

    def on_diff(self, diff: DepthDiff) -> list[Depth]:
        """Feed one diff; returns what to publish (possibly nothing)."""
        if self.state == "synced":
            return self._continue(diff)
        if len(self.buffer) >= MAX_BUFFER:
            self.buffer.clear()
            self.stats.buffer_overflows += 1
            self.snapshot_wanted = True
        self.buffer.append(diff)
        return self._try_sync() if self._base is not None else []

    def on_snapshot(self, snapshot: Snapshot) -> list[Depth]:
        """A REST snapshot arrived; returns what to publish. May ask for another (``snapshot_wanted``)."""
        self.snapshot_wanted = False
        if not self.futures and self.buffer and snapshot.last_update_id < self.buffer[0].first_update_id:
            # Spot step 4, to the letter: "if the snapshot's lastUpdateId is strictly less than the U
            # of the first buffered event, go back to step 3" (even when L + 1 == U would continue).
            self.stats.refetches += 1
            self.snapshot_wanted = True
            return []
        self._base = snapshot
        return self._try_sync()

    def _try_sync(self) -> list[Depth]:
        base = self._base
        assert base is not None
        last = base.last_update_id
        while self.buffer:  # drop what the snapshot already covers
            diff = self.buffer[0]
            covered = diff.last_update_id < last if self.futures else diff.last_update_id <= last
            if not covered:
                break
            self.buffer.popleft()
            self.stats.stale_dropped += 1
        if not self.buffer:
            return []  # wait for the first event that straddles the snapshot
        first = self.buffer[0]
        straddles = (
            first.first_update_id <= last <= first.last_update_id
            if self.futures
            else first.first_update_id <= last + 1 <= first.last_update_id
        )
        if not straddles:  # the snapshot is older than the events we hold: fetch a newer one
            self._base = None
            self.snapshot_wanted = True
            self.stats.refetches += 1
            return []
        self.book.reset(base.bids, base.asks, last)
        self._base = None
        newest = first
        for diff in self.buffer:
            if diff is not first:
                if diff.last_update_id <= newest.last_update_id:  # old news: ignore
                    self.stats.stale_dropped += 1
                    continue
                if not self._continues(diff):
                    self._restart(gap=True)
                    return []
            self.book.apply(diff.bids, diff.asks, diff.last_update_id)
            newest = diff
        self.buffer.clear()
        self.state = "synced"
        self.stats.resyncs += 1
        return [
            Depth(
                self.exchange,
                self.symbol,
                self.book.bids(),
                self.book.asks(),
                True,
                None,
                newest.last_update_id,
                None,
                newest.ts_event,
                newest.ts_recv,
            )
        ]

    def _continues(self, diff: DepthDiff) -> bool:
        last = self.book.last_update_id or 0
        if self.futures:
            return diff.prev_last_update_id == last
        return diff.first_update_id <= last + 1

    def _continue(self, diff: DepthDiff) -> list[Depth]:
        book = self.book
        last = book.last_update_id or 0
        if diff.last_update_id <= last:  # old (or repeated) news: "if u < local update id, ignore"
            self.stats.stale_dropped += 1
            return []
        # _continues, inline (the hot path: once per diff)
        if (diff.prev_last_update_id != last) if self.futures else (diff.first_update_id > last + 1):
            self._restart(gap=True)
            self.buffer.append(diff)  # the event after the gap is the first of the new buffer
            return []
        book.apply(diff.bids, diff.asks, diff.last_update_id)
        return [
            Depth(
                self.exchange,
                self.symbol,
                diff.bids,
                diff.asks,
                False,
                diff.first_update_id,
                diff.last_update_id,
                diff.prev_last_update_id,
                diff.ts_event,
                diff.ts_recv,
            )
        ]

    def resync(self) -> None:
        """Start over from a new snapshot (e.g. after a reconnect or a lost event downstream)."""
        self._restart(gap=False)

    def _restart(self, gap: bool) -> None:
        if gap:
            self.stats.gaps += 1
        self.state = "waiting"
        self.book = OrderBook()
        self.buffer.clear()
        self._base = None
        self.snapshot_wanted = True
