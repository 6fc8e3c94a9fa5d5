"""What the feed's pipeline shows the rest of the service: counters, health sections, its books.

A base class of ``HFTConnectorStream``, kept apart from the hot path: nothing here runs per event.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from services.common.book import BookCopy
from services.common.rates import seed_metrics
from services.connector_feed.books import FeedBooks
from services.connector_feed.connector import NativeConnector
from services.connector_feed.events import Depth, Trade
from services.connector_feed.lanes import LaneRates, Lanes
from services.connector_feed.publisher import Publisher
from services.connector_feed.queue import Queued


class StreamViews:
    connector: NativeConnector
    lanes: Lanes
    rates: LaneRates
    books: FeedBooks
    queue: deque[Queued]
    publisher: Publisher
    last_event_ns: int | None
    #: The connector's own last state per symbol (from the Status events it reported).
    symbol_states: dict[str, tuple[str, str]]

    # The lanes' counters, where health, metrics and callers look for them.
    @property
    def published(self) -> dict[str, int]:
        return self.lanes.totals("published")

    @property
    def published_by_key(self) -> dict[tuple[str, str, str], int]:
        return self.lanes.by_key("published")

    @property
    def received(self) -> dict[str, int]:
        return self.lanes.totals("received")

    @property
    def received_by_key(self) -> dict[tuple[str, str, str], int]:
        return self.lanes.by_key("received")

    @property
    def statuses(self) -> dict[str, str]:
        return self.publisher.statuses

    @property
    def connected(self) -> bool:
        return self.connector.is_connected()

    def depth_seq(self, symbol: str) -> int:
        """The seq of the last depth message of ``symbol`` accepted (0: none yet)."""
        lane = self.lanes.depth.get(symbol)
        return 0 if lane is None else lane.seq

    # ---- books -------------------------------------------------------------------------------

    def book_copy(self, symbol: str) -> tuple[BookCopy, int] | None:
        """The feed's book of ``symbol`` as it is now (unsorted) and the seq of the last depth message
        reflected in it; None while the book is being (re)built."""
        source = self.connector.book(symbol)
        copy = self.books.copy(symbol) if source is None else (source.book.copy() if source.synced else None)
        if copy is None or copy.last_update_id is None:
            return None
        return copy, self.depth_seq(symbol)

    def book_snapshot(self, symbol: str) -> Depth | None:
        """The feed's current book of ``symbol`` as a snapshot event (None while it has none)."""
        source = self.connector.book(symbol)
        if source is None:
            return self.books.snapshot(symbol)
        book = source.book
        last = book.last_update_id
        if not source.synced or last is None:
            return None
        now = time.time_ns()
        return Depth.whole_book(self.connector.exchange, symbol, book.bids(), book.asks(), last, now, now)

    # ---- health ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every symbol the connector reports as not live, with its reason (health's reasons)."""
        return [
            f"{symbol} {state}: {reason}"
            for symbol, (state, reason) in sorted(self.symbol_states.items())
            if state != "live"
        ]

    def queue_sizes(self) -> tuple[int, int]:
        """(trades, depth) currently queued."""
        trades = sum(1 for e in self.queue if type(e) is Trade)
        return trades, sum(1 for e in self.queue if type(e) is Depth)

    def last_ts_iso(self) -> str | None:
        if self.last_event_ns is None:
            return None
        return datetime.fromtimestamp(self.last_event_ns / 1e9, tz=UTC).isoformat()

    def connector_section(self) -> dict[str, Any]:
        """The seed's ``connector`` health section."""
        try:
            connector_health = self.connector.health()
        except Exception as error:  # a connector's health bug must not break ours
            connector_health = {"error": repr(error)}
        return {
            "connected": self.connected,
            "last_ts": self.last_ts_iso(),
            "queue_size": len(self.queue),
            "reconnection_attempts": self.connector.reconnection_attempts(),
            "connector_health": connector_health,
        }

    def metrics(self) -> dict[str, Any]:
        """The seed's metrics shape: per kind, per_minute_count, per_second_rate, queue_size."""
        self.rates.sync()
        return seed_metrics(self.rates.trades, self.rates.depth, self.queue_sizes())
