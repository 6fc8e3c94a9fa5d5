from __future__ import annotations

from services.common.book import OrderBook
from services.connector_feed.events import Depth, Trade
from services.connector_feed.queue import EventQueue, Queued


def _trade(i: int, symbol: str = "A") -> Trade:
    return Trade("stub", symbol, i, "1.0", "1", "buy", False, i, i)


def _delta(i: int, symbol: str = "A", price: str = "1.0", qty: str = "1") -> Depth:
    return Depth("stub", symbol, [(price, qty)], [], False, i, i, i - 1, i, i)


def _snapshot(i: int, symbol: str = "A") -> Depth:
    return Depth("stub", symbol, [("1.0", "5")], [("2.0", "5")], True, None, i, None, i, i)


class Books:
    """The feed's books, as the stream keeps them (applied before queueing)."""

    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}

    def apply(self, event: Depth) -> Depth:
        book = self.books.setdefault(event.symbol, OrderBook())
        if event.is_snapshot:
            book.reset(event.bids, event.asks, event.last_update_id)
        else:
            book.apply(event.bids, event.asks, event.last_update_id)
        return event

    def snapshot(self, symbol: str) -> Depth | None:
        book = self.books.get(symbol)
        if book is None or book.last_update_id is None:
            return None
        return Depth("stub", symbol, book.bids(), book.asks(), True, None, book.last_update_id, None, 0, 0)


def test_trades_drop_oldest_and_are_counted() -> None:
    queue = EventQueue(3, lambda _: None)

    for i in range(5):
        queue.put(_trade(i))

    assert [e.trade_id for e in queue.pop_all() if isinstance(e, Trade)] == [2, 3, 4]
    assert queue.dropped.trades == 2
    assert queue.dropped.by_reason == {"queue_full": 2}


def test_a_dropped_delta_is_replaced_by_a_snapshot_of_the_book() -> None:
    books = Books()
    queue = EventQueue(3, books.snapshot)
    queue.put(books.apply(_snapshot(1)))
    queue.put(books.apply(_delta(2, price="1.0", qty="0")))  # removes bid 1.0
    queue.put(_trade(1))
    queue.put(books.apply(_delta(3, price="0.9", qty="7")))  # full: the snapshot(1) is the victim

    published: list[Queued] = queue.pop_all()

    depth = [e for e in published if isinstance(e, Depth)]
    assert len(depth) == 1, "the queued delta 2 was folded into the new snapshot"
    assert depth[0].is_snapshot
    assert depth[0].last_update_id == 3
    assert depth[0].bids == [("0.9", "7")]
    assert depth[0].asks == [("2.0", "5")]
    assert [type(e) for e in published] == [Trade, Depth]
    assert queue.dropped.depth == 2  # snapshot 1 and delta 2; delta 3 travels inside the new snapshot


def test_subscriber_book_stays_right_through_overflow() -> None:
    """Rebuilding from what is published gives the feed's book, however much was dropped."""
    books, subscriber = Books(), OrderBook()
    queue = EventQueue(4, books.snapshot)
    queue.put(books.apply(_snapshot(1)))
    for i in range(2, 200):
        queue.put(books.apply(_delta(i, price=f"{1 + i % 7}.0", qty=str(i % 3))))
        queue.put(_trade(i))
        if i % 13 == 0:
            for event in queue.pop_all():
                if isinstance(event, Depth):
                    if event.is_snapshot:
                        subscriber.reset(event.bids, event.asks, event.last_update_id)
                    else:
                        assert event.first_update_id == (subscriber.last_update_id or 0) + 1, "silent gap"
                        subscriber.apply(event.bids, event.asks, event.last_update_id)
    for event in queue.pop_all():
        if isinstance(event, Depth):
            if event.is_snapshot:
                subscriber.reset(event.bids, event.asks, event.last_update_id)
            else:
                subscriber.apply(event.bids, event.asks, event.last_update_id)

    assert queue.dropped.depth > 0
    assert subscriber.bids() == books.books["A"].bids()
    assert subscriber.last_update_id == books.books["A"].last_update_id


def test_unknown_book_waits_for_the_next_snapshot() -> None:
    queue = EventQueue(2, lambda _: None)
    queue.put(_delta(1))
    queue.put(_delta(2))
    queue.put(_trade(1))  # full: delta 1 dropped, no book to snapshot

    queue.put(_delta(3))  # dropped: awaiting a snapshot
    queue.put(_snapshot(4))

    published = queue.pop_all()
    assert [type(e) for e in published] == [Trade, Depth]
    assert isinstance(published[1], Depth)
    assert published[1].is_snapshot
    assert queue.dropped.by_reason["awaiting_snapshot"] == 1
    assert not queue.awaiting_snapshot


def test_sizes_per_kind() -> None:
    queue = EventQueue(10, lambda _: None)
    queue.put(_trade(1))
    queue.put(_snapshot(1))
    queue.put(_trade(2))

    assert queue.sizes() == (2, 1)
    assert len(queue) == 3


def test_a_delta_after_an_unrepairable_drop_is_not_published() -> None:
    """Without a book to snapshot, the deltas that follow a dropped one wait for the next snapshot."""
    queue = EventQueue(2, lambda _: None)
    queue.put(_delta(1))
    queue.put(_delta(2))

    queue.put(_delta(3))  # full: delta 1 dropped, no book -> 2 goes too, and 3 must not be published

    assert [e for e in queue.pop_all() if isinstance(e, Depth)] == []
    assert queue.dropped.depth == 3
