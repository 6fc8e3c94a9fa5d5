"""Trade de-duplication and id-gap counting, per symbol.

While a connection is replaced make-before-break, both sockets deliver the same trades, not in
lockstep: the new one starts later, the old one may deliver trades the new one never sends. A
trade id seen recently is a duplicate (dropped, counted); an id older than the newest but not seen
(one socket ran ahead) is kept. ``@trade`` ids and ``@aggTrade`` aggregate ids are both
contiguous per symbol, so a jump past the newest id is a gap: counted, never silent.
"""

from __future__ import annotations

from collections import deque

#: Trade ids remembered per symbol (far more than two sockets can be apart).
RECENT_TRADE_IDS = 4096


class _Lane:
    __slots__ = ("last", "order", "seen")

    def __init__(self) -> None:
        self.last = -1
        self.seen: set[int] = set()
        self.order: deque[int] = deque()


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
            lane = self._lanes[symbol] = _Lane()
        last = lane.last
        if trade_id == last + 1 or last < 0:  # the common case: the next id
            lane.last = trade_id
        elif trade_id <= last:
            if trade_id in lane.seen:
                self.duplicates += 1
                return False
        else:  # ids skipped: a gap at the venue or on our side
            self.gaps[symbol] = self.gaps.get(symbol, 0) + 1
            self.missing[symbol] = self.missing.get(symbol, 0) + trade_id - last - 1
            lane.last = trade_id
        lane.seen.add(trade_id)
        lane.order.append(trade_id)
        if len(lane.order) > RECENT_TRADE_IDS:
            lane.seen.discard(lane.order.popleft())
        return True

    def skip(self, symbol: str, trade_id: int) -> None:
        """An id of the sequence that is not published (a USD-M insurance-fund or ADL print): the
        next trade after it is no gap. Only the very next id is skipped, and it is not remembered as
        seen, so a trade with that id is never taken for a duplicate."""
        lane = self._lanes.get(symbol)
        if lane is not None and trade_id == lane.last + 1:
            lane.last = trade_id

    def last_id(self, symbol: str) -> int | None:
        lane = self._lanes.get(symbol)
        return None if lane is None or lane.last < 0 else lane.last
