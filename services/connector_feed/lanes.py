"""One ``Lane`` per subject the feed publishes (``md.<SYMBOL>.trades``, ``md.<SYMBOL>.depth``).

The hot path's one dictionary lookup per event: it holds the subject (built once), the seq of
the last message accepted for it (``schemas.models.SEQUENCE_RULE``) and its counters. Health and
metrics read the counters from the lanes when asked, never per event; the seed's per-second rates
come from the same counters, sampled once a second (``LaneRates``), not from a per-event call.
"""

from __future__ import annotations

import time

from schemas import subjects
from services.common.rates import RollingCounter


class Lane:
    __slots__ = ("exchange", "feed_keeps_book", "kind", "made", "published", "seq", "subject", "symbol")

    def __init__(self, kind: str, exchange: str, symbol: str, feed_keeps_book: bool = False) -> None:
        self.kind = kind  # "trade" | "depth"
        self.exchange = exchange
        self.symbol = symbol
        self.subject = subjects.trades(symbol) if kind == "trade" else subjects.depth(symbol)
        #: Depth of a symbol whose connector keeps no book: the feed keeps it (``FeedBooks``).
        self.feed_keeps_book = feed_keeps_book
        self.seq = 0
        self.made = 0  # messages the feed made itself (snapshots of its book): sequenced, not received
        self.published = 0

    @property
    def received(self) -> int:
        """Events accepted from the connector (every seq but those the feed made)."""
        return self.seq - self.made


class Lanes:
    """The lanes of one feed, by kind and symbol."""

    def __init__(self) -> None:
        self.trades: dict[str, Lane] = {}
        self.depth: dict[str, Lane] = {}

    def add(self, kind: str, exchange: str, symbol: str, feed_keeps_book: bool = False) -> Lane:
        lane = Lane(kind, exchange, symbol, feed_keeps_book)
        (self.trades if kind == "trade" else self.depth)[symbol] = lane
        return lane

    def all(self) -> list[Lane]:
        return [*self.trades.values(), *self.depth.values()]

    def totals(self, field: str) -> dict[str, int]:
        """{"trade": n, "depth": n} of a counter (``received`` or ``published``)."""
        return {
            "trade": sum(getattr(lane, field) for lane in list(self.trades.values())),
            "depth": sum(getattr(lane, field) for lane in list(self.depth.values())),
        }

    def by_key(self, field: str) -> dict[tuple[str, str, str], int]:
        """(type, exchange, symbol) -> a counter, for the md.events.* metrics."""
        return {(lane.kind, lane.exchange, lane.symbol): getattr(lane, field) for lane in self.all()}


class LaneRates:
    """The seed's rolling per-minute counts, fed from the lanes' ``received`` totals.

    ``sync`` adds what arrived since the last call to the current second: the feed calls it once
    a second and before every read, so an event lands in its own second or the next one.
    """

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self.trades = RollingCounter(clock=time.time)
        self.depth = RollingCounter(clock=time.time)
        self._seen = {"trade": 0, "depth": 0}

    def sync(self) -> None:
        now = time.time()
        totals = self._lanes.totals("received")
        for kind, counter in (("trade", self.trades), ("depth", self.depth)):
            new = totals[kind] - self._seen[kind]
            if new:
                counter.add(new, now)
                self._seen[kind] = totals[kind]
