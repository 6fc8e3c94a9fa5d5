"""The feed's own book per symbol, so that a depth event dropped from the queue can be repaired
with a full snapshot (see ``queue``). A snapshot-only connector costs nothing here: a snapshot *is*
the book, kept as is until a delta needs its levels.
"""

from __future__ import annotations

from services.common.book import BookCopy, OrderBook
from services.connector_feed.events import Depth


class FeedBooks:
    def __init__(self) -> None:
        self._books: dict[str, OrderBook] = {}
        self._latest: dict[str, Depth] = {}
        self._synced: set[str] = set()  # symbols whose book came from a connector snapshot
        self._base: dict[str, Depth] = {}  # the newest snapshot, while no delta followed it

    def apply(self, event: Depth) -> None:
        """Keep the book of ``event.symbol`` (called for every depth event before it is queued)."""
        symbol = event.symbol
        self._latest[symbol] = event
        if event.is_snapshot:
            # Lazy: a snapshot *is* the book. Parse it into levels only when a delta needs them,
            # so snapshot-only connectors (top-N books) pay nothing per message.
            self._base[symbol] = event
            self._synced.add(symbol)
            self._books.pop(symbol, None)
            return
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = OrderBook()
            base = self._base.pop(symbol, None)
            if base is not None:
                book.reset(base.bids, base.asks, base.last_update_id)
        book.apply(event.bids, event.asks, event.last_update_id)

    def copy(self, symbol: str) -> BookCopy | None:
        """The book of ``symbol`` as it is now, unsorted (None while it has none)."""
        if symbol not in self._synced:
            return None
        base = self._base.get(symbol)
        if base is not None:  # no delta since the last snapshot: it is the book (already in order)
            return BookCopy(list(base.bids), list(base.asks), base.last_update_id)
        return self._books[symbol].copy()

    def snapshot(self, symbol: str) -> Depth | None:
        """The feed's book for ``symbol`` as a snapshot event (used to repair a dropped delta)."""
        latest = self._latest.get(symbol)
        if latest is None or symbol not in self._synced:
            return None  # deltas without a base: the book is unknown until the connector snapshots
        base = self._base.get(symbol)
        if base is not None:  # no delta since the last snapshot: it is the book
            return base
        book = self._books[symbol]
        assert book.last_update_id is not None
        return Depth.whole_book(
            latest.exchange,
            symbol,
            book.bids(),
            book.asks(),
            book.last_update_id,
            latest.ts_event,
            latest.ts_recv,
        )
