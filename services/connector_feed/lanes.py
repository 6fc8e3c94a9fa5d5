"""One ``Lane`` per subject the feed publishes (``md.<SYMBOL>.trades``, ``md.<SYMBOL>.depth``).

The hot path's one dictionary lookup per event: it holds the subject (built once), the seq of
the last message accepted for it (``schemas.models.SEQUENCE_RULE``) and its counters. Health and
metrics read the counters from the lanes when asked, never per event.
"""

from __future__ import annotations

from schemas import subjects


class Lane:
    __slots__ = ("exchange", "kind", "published", "received", "seq", "subject", "symbol")

    def __init__(self, kind: str, exchange: str, symbol: str) -> None:
        self.kind = kind  # "trade" | "depth"
        self.exchange = exchange
        self.symbol = symbol
        self.subject = subjects.trades(symbol) if kind == "trade" else subjects.depth(symbol)
        self.seq = 0
        self.received = 0
        self.published = 0


class Lanes:
    """The lanes of one feed, by kind and symbol."""

    def __init__(self) -> None:
        self.trades: dict[str, Lane] = {}
        self.depth: dict[str, Lane] = {}

    def add(self, kind: str, exchange: str, symbol: str) -> Lane:
        lane = Lane(kind, exchange, symbol)
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
