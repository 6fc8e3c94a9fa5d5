"""hftbacktest 2.4.4's ``HashMapMarketDepth`` (L2), in Python, so a replay publishes its book.

hftbacktest keeps every level in a hash map and tracks the best bid and ask separately; what a
strategy sees (``depth()``, ``snapshot()``) is the bids at or below the best bid and the asks at or
above the best ask. A level crossed by the other side stays in the map, hidden, and can come back
(``hftbacktest/src/depth/hashmapmarketdepth.rs``: ``update_*_depth``, ``clear_depth``,
``apply_snapshot``, ``snapshot``). This class does the same, row by row, and reports which ticks a
batch of rows may have changed, so the replay can publish the change of the *visible* book as one
delta. Prices are integer ticks; quantities are kept as hftbacktest keeps them (the float of the
row; a level goes when its quantity rounds to 0 lots).
"""

from __future__ import annotations

INVALID_MIN = -(1 << 63)
INVALID_MAX = (1 << 63) - 1


def _below(levels: dict[int, float], start: int, end: int) -> int:
    """The highest tick in ``[end, start)`` with a positive quantity (hftbacktest's ``depth_below``)."""
    if start - end > 2 * len(levels) + 64:  # a long empty stretch: look at the keys instead
        found = [t for t, q in levels.items() if end <= t < start and q > 0]
        return max(found) if found else INVALID_MIN
    for tick in range(start - 1, end - 1, -1):
        if levels.get(tick, 0.0) > 0:
            return tick
    return INVALID_MIN


def _above(levels: dict[int, float], start: int, end: int) -> int:
    """The lowest tick in ``(start, end]`` with a positive quantity (``depth_above``)."""
    if end - start > 2 * len(levels) + 64:
        found = [t for t, q in levels.items() if start < t <= end and q > 0]
        return min(found) if found else INVALID_MAX
    for tick in range(start + 1, end + 1):
        if levels.get(tick, 0.0) > 0:
            return tick
    return INVALID_MAX


def ticks_in_range(levels: dict[int, float], low: int, high: int) -> list[int]:
    """The ticks of ``levels`` in ``[low, high]``."""
    if high < low:
        return []
    if high - low > 2 * len(levels) + 64:
        return [t for t in levels if low <= t <= high]
    return [t for t in range(low, high + 1) if t in levels]


class HbtDepth:
    __slots__ = (
        "asks",
        "best_ask",
        "best_bid",
        "bids",
        "high_ask",
        "low_bid",
        "touched_asks",
        "touched_bids",
    )

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.best_bid = self.best_ask = self.low_bid = self.high_ask = 0
        #: Ticks whose level a row changed since the last ``take_touched`` (with their old quantity).
        self.touched_bids: dict[int, float] = {}
        self.touched_asks: dict[int, float] = {}
        self._reset()

    def _reset(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.best_bid = INVALID_MIN
        self.best_ask = INVALID_MAX
        self.low_bid = INVALID_MAX
        self.high_ask = INVALID_MIN

    def update_bid(self, tick: int, qty: float, lots: int) -> None:
        self.touched_bids.setdefault(tick, self.bids.get(tick, 0.0))
        if lots > 0:
            self.bids[tick] = qty
        else:
            self.bids.pop(tick, None)
        if lots == 0:
            if tick == self.best_bid:
                self.best_bid = _below(self.bids, self.best_bid, self.low_bid)
                if self.best_bid == INVALID_MIN:
                    self.low_bid = INVALID_MAX
        else:
            if tick > self.best_bid:
                self.best_bid = tick
                if self.best_bid >= self.best_ask:
                    self.best_ask = _above(self.asks, self.best_bid, self.high_ask)
            self.low_bid = min(self.low_bid, tick)

    def update_ask(self, tick: int, qty: float, lots: int) -> None:
        self.touched_asks.setdefault(tick, self.asks.get(tick, 0.0))
        if lots > 0:
            self.asks[tick] = qty
        else:
            self.asks.pop(tick, None)
        if lots == 0:
            if tick == self.best_ask:
                self.best_ask = _above(self.asks, self.best_ask, self.high_ask)
                if self.best_ask == INVALID_MAX:
                    self.high_ask = INVALID_MIN
        else:
            if tick < self.best_ask:
                self.best_ask = tick
                if self.best_bid >= self.best_ask:
                    self.best_bid = _below(self.bids, self.best_ask, self.low_bid)
            self.high_ask = max(self.high_ask, tick)

    def clear_bids(self, upto: int | None) -> None:
        """``DEPTH_CLEAR|BUY``: bids from ``upto`` up to the best (all of them if None: a NaN price)."""
        if upto is None:
            self._forget(self.bids, self.touched_bids, list(self.bids))
            self.best_bid = INVALID_MIN
        else:
            if self.best_bid != INVALID_MIN:
                self._forget(self.bids, self.touched_bids, ticks_in_range(self.bids, upto, self.best_bid))
            self.best_bid = _below(self.bids, upto - 1, self.low_bid)  # sic: skips tick upto - 1
        if self.best_bid == INVALID_MIN:
            self.low_bid = INVALID_MAX

    def clear_asks(self, upto: int | None) -> None:
        """``DEPTH_CLEAR|SELL``: asks from the best up to ``upto`` (all of them if None)."""
        if upto is None:
            self._forget(self.asks, self.touched_asks, list(self.asks))
            self.best_ask = INVALID_MAX
        else:
            if self.best_ask != INVALID_MAX:
                self._forget(self.asks, self.touched_asks, ticks_in_range(self.asks, self.best_ask, upto))
            self.best_ask = _above(self.asks, upto + 1, self.high_ask)  # sic: skips tick upto + 1
        if self.best_ask == INVALID_MAX:
            self.high_ask = INVALID_MIN

    def clear_all(self) -> None:
        """``DEPTH_CLEAR`` without a side."""
        self._forget(self.bids, self.touched_bids, list(self.bids))
        self._forget(self.asks, self.touched_asks, list(self.asks))
        self.best_bid, self.best_ask = INVALID_MIN, INVALID_MAX
        self.low_bid, self.high_ask = INVALID_MAX, INVALID_MIN

    def apply_snapshot(self, levels: list[tuple[bool, int, float]]) -> None:
        """hftbacktest's ``initial_snapshot``: the book becomes these ``(is_bid, tick, qty)`` levels."""
        self._reset()
        for is_bid, tick, qty in levels:
            if is_bid:
                self.best_bid = max(self.best_bid, tick)
                self.low_bid = min(self.low_bid, tick)
                self.bids[tick] = qty
            else:
                self.best_ask = min(self.best_ask, tick)
                self.high_ask = max(self.high_ask, tick)
                self.asks[tick] = qty

    @staticmethod
    def _forget(levels: dict[int, float], touched: dict[int, float], ticks: list[int]) -> None:
        for tick in ticks:
            touched.setdefault(tick, levels[tick])
            del levels[tick]

    def visible_bids(self) -> list[tuple[int, float]]:
        """What hftbacktest's ``snapshot()`` shows: bids at or below the best, best first."""
        best = self.best_bid
        return sorted(((t, q) for t, q in self.bids.items() if t <= best), reverse=True)

    def visible_asks(self) -> list[tuple[int, float]]:
        best = self.best_ask
        return sorted((t, q) for t, q in self.asks.items() if t >= best)
