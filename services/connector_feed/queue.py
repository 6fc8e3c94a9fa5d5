"""The bounded queue between the connector and the NATS publisher, with its overflow policy.

When full, the oldest event is dropped (counted). Trades are simply lost. Depth is never left
silently wrong: dropping a depth event of a symbol also removes that symbol's other queued depth
events and queues, in their place, a full snapshot of the feed's own book for that symbol - so the
next depth message a subscriber sees for it replaces the whole book.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas import Status
from services.connector_feed.events import Depth, Event, Trade

#: What the queue holds: market data, and the rare Status changes (never dropped).
Queued = Event | Status

#: Builds a snapshot of the feed's current book for a symbol (None if the book is unknown).
SnapshotSource = Callable[[str], Depth | None]


@dataclass
class DropCounts:
    trades: int = 0
    depth: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    #: (type, exchange, symbol, reason) -> count, for the md.events.dropped metric.
    by_key: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    last_drop_monotonic: float | None = None

    def count(self, event: Event, reason: str, n: int = 1) -> None:
        kind = "trade" if type(event) is Trade else "depth"
        if kind == "trade":
            self.trades += n
        else:
            self.depth += n
        self.by_reason[reason] = self.by_reason.get(reason, 0) + n
        key = (kind, event.exchange, event.symbol, reason)
        self.by_key[key] = self.by_key.get(key, 0) + n
        self.last_drop_monotonic = time.monotonic()


class EventQueue:
    def __init__(self, maxsize: int, snapshot_source: SnapshotSource) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[Queued] = deque()
        self._snapshot_source = snapshot_source
        self._ready = asyncio.Event()
        self.dropped = DropCounts()
        #: Symbols whose book the feed does not know: their deltas are dropped until a snapshot.
        self.awaiting_snapshot: set[str] = set()
        #: Snapshots the queue published to repair dropped depth, per symbol (md.book.resyncs).
        self.resyncs: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def sizes(self) -> tuple[int, int]:
        """(trades, depth) currently queued."""
        trades = sum(1 for e in self._items if type(e) is Trade)
        depth = sum(1 for e in self._items if type(e) is Depth)
        return trades, depth

    def put(self, event: Queued) -> None:
        """Queue ``event`` (its depth must already be applied to the feed's book)."""
        if type(event) is Depth and event.symbol in self.awaiting_snapshot:
            if not event.is_snapshot:
                self.dropped.count(event, "awaiting_snapshot")
                return
            self.awaiting_snapshot.discard(event.symbol)
        if len(self._items) >= self.maxsize:
            victim = self._pop_oldest_market_data()  # a Status (state change) is never dropped
            if victim is None:
                pass
            elif type(victim) is Trade:
                self.dropped.count(victim, "queue_full")
            elif self._resnapshot(victim) and type(event) is Depth and event.symbol == victim.symbol:
                return  # the snapshot just queued already holds this event's levels
            if type(event) is Depth and not event.is_snapshot and event.symbol in self.awaiting_snapshot:
                self.dropped.count(event, "awaiting_snapshot")  # no book to repair with: wait for one
                return
        self._items.append(event)
        self._ready.set()

    def _pop_oldest_market_data(self) -> Event | None:
        for i, item in enumerate(self._items):
            if not isinstance(item, Status):
                del self._items[i]
                return item
        return None

    def _resnapshot(self, victim: Event) -> bool:
        """Drop the symbol's queued depth, queue a fresh snapshot in its place; True if queued."""
        symbol = victim.symbol
        kept = deque(e for e in self._items if not (type(e) is Depth and e.symbol == symbol))
        self.dropped.count(victim, "queue_full", 1 + len(self._items) - len(kept))
        self.resyncs[symbol] = self.resyncs.get(symbol, 0) + 1
        self._items = kept
        snapshot = self._snapshot_source(symbol)
        if snapshot is None:
            self.awaiting_snapshot.add(symbol)
            return False
        self._items.append(snapshot)
        return True

    def pop_all(self) -> list[Queued]:
        """Everything queued, oldest first (empty list if nothing)."""
        items = list(self._items)
        self._items.clear()
        self._ready.clear()
        return items

    async def wait(self) -> None:
        """Wait until something is queued."""
        if not self._items:
            await self._ready.wait()
