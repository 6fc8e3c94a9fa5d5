"""Trade de-duplication and id-gap counting, per symbol.

While a connection is replaced make-before-break, both sockets deliver the same trades, not in
lockstep: the new one starts later, the old one may deliver trades the new one never sends. A
trade id seen recently is a duplicate (dropped, counted); an id older than the newest but not seen
(one socket ran ahead) is kept. ``@trade`` ids and ``@aggTrade`` aggregate ids are both
contiguous per symbol, so a jump past the newest id is a gap: counted, never silent.

Ids arrive in order almost always, so what a lane remembers is the newest id and the few ids
*not* seen below it (the holes a gap left, within the window): the next id costs one compare and
one store, and an id at or below the newest is a duplicate unless it fills a hole.
"""

from __future__ import annotations

#: Trade ids remembered per symbol (far more than two sockets can be apart).
RECENT_TRADE_IDS = 4096


class _Lane:
    __slots__ = ("below", "first", "holes", "last")

    def __init__(self, first: int) -> None:
        self.first = first  # the lane's first id: what came before it is unknown, not a hole
        self.last = first
        #: Ids within the window below ``last`` not seen yet (left by a gap): a late one is kept.
        self.holes: set[int] = set()
        self.below: set[int] = set()  # ids seen below ``first`` (rare: a socket that ran behind)


class TradeDedupe:
    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self.duplicates = 0
        self.gaps: dict[str, int] = {}  # symbol -> id gaps
        self.missing: dict[str, int] = {}  # symbol -> ids skipped by those gaps

    def admit(self, symbol: str, trade_id: int) -> bool:
        """True if this trade is new (publish it); False for a duplicate."""
        lane = self._lanes.get(symbol)
        if lane is None:
            self._lanes[symbol] = _Lane(trade_id)
            return True
        last = lane.last
        if trade_id == last + 1:  # the common case: the next id
            lane.last = trade_id
            if lane.holes:
                lane.holes.discard(trade_id - RECENT_TRADE_IDS)  # leaves the window
            return True
        if trade_id <= last:
            if trade_id in lane.holes:  # a late trade fills a hole (one socket ran ahead)
                lane.holes.discard(trade_id)
                return True
            if trade_id <= last - RECENT_TRADE_IDS:
                return True  # older than the window: not remembered, kept
            if trade_id < lane.first and trade_id not in lane.below:  # before its first: kept once
                lane.below.add(trade_id)
                return True
            self.duplicates += 1
            return False
        # Ids skipped: a gap at the venue or on our side; remember the holes within the window.
        self.gaps[symbol] = self.gaps.get(symbol, 0) + 1
        self.missing[symbol] = self.missing.get(symbol, 0) + trade_id - last - 1
        floor = trade_id - RECENT_TRADE_IDS
        lane.holes = {h for h in lane.holes if h > floor}
        lane.holes.update(range(max(last + 1, floor + 1), trade_id))
        lane.last = trade_id
        return True

    def skip(self, symbol: str, trade_id: int) -> None:
        """An id of the sequence that is not published (a USD-M insurance-fund or ADL print): the
        next trade after it is no gap. Only the very next id is skipped, and it is not remembered as
        seen, so a trade with that id is never taken for a duplicate."""
        lane = self._lanes.get(symbol)
        if lane is not None and trade_id == lane.last + 1:
            lane.last = trade_id
            lane.holes.add(trade_id)  # not seen: a trade with this id is still new
            lane.holes.discard(trade_id - RECENT_TRADE_IDS)

    def last_id(self, symbol: str) -> int | None:
        lane = self._lanes.get(symbol)
        return None if lane is None else lane.last
