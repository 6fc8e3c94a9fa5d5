"""A price-level order book rebuilt from snapshots and absolute-quantity deltas.

Levels are keyed by the venue's price string, canonicalised (``"100.50"`` and ``"100.5"`` are one
level; venues format one price differently in REST and websocket payloads) - no ``Decimal`` per
update on the hot path. Values keep the wire strings, so a book re-published as a snapshot carries
exactly the digits it was given. ``Decimal`` is used only to order levels (snapshots, best prices).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

WireLevel = tuple[str, str]


def price_key(price: str) -> str:
    """One key per price level: trailing zeros (and a bare point) are not part of the price."""
    return price.rstrip("0").rstrip(".") if "." in price else price


def _price(level: WireLevel) -> Decimal:
    return Decimal(level[0])


class PriceLevels:
    """One side of a book."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: dict[str, WireLevel] = {}

    def apply(self, levels: Iterable[WireLevel]) -> None:
        book = self._levels
        for level in levels:
            if level[1].strip("0."):  # an absolute quantity
                book[price_key(level[0])] = level
            else:  # quantity 0 removes the level; removing an unknown level is normal
                book.pop(price_key(level[0]), None)

    def clear(self) -> None:
        self._levels.clear()

    def sorted(self, descending: bool, depth: int | None = None) -> list[WireLevel]:
        return sorted(self._levels.values(), key=_price, reverse=descending)[:depth]

    def best(self, highest: bool) -> Decimal | None:
        if not self._levels:
            return None
        prices = (Decimal(level[0]) for level in self._levels.values())
        return max(prices) if highest else min(prices)

    def __len__(self) -> int:
        return len(self._levels)


class OrderBook:
    __slots__ = ("_asks", "_bids", "last_update_id")

    def __init__(self) -> None:
        self._bids = PriceLevels()
        self._asks = PriceLevels()
        self.last_update_id: int | None = None

    @property
    def is_empty(self) -> bool:
        return not self._bids and not self._asks

    def reset(self, bids: Iterable[WireLevel], asks: Iterable[WireLevel], last_update_id: int | None) -> None:
        """Replace the whole book (a snapshot); zero-quantity levels are not kept."""
        self._bids.clear()
        self._asks.clear()
        self.apply(bids, asks, last_update_id)

    def apply(self, bids: Iterable[WireLevel], asks: Iterable[WireLevel], last_update_id: int | None) -> None:
        """Apply a delta: each level's quantity is absolute; quantity 0 removes the level."""
        self._bids.apply(bids)
        self._asks.apply(asks)
        if last_update_id is not None:
            self.last_update_id = last_update_id

    def bids(self, depth: int | None = None) -> list[WireLevel]:
        """Bid levels, best (highest) first."""
        return self._bids.sorted(descending=True, depth=depth)

    def asks(self, depth: int | None = None) -> list[WireLevel]:
        """Ask levels, best (lowest) first."""
        return self._asks.sorted(descending=False, depth=depth)

    def best_bid(self) -> Decimal | None:
        return self._bids.best(highest=True)

    def best_ask(self) -> Decimal | None:
        return self._asks.best(highest=False)

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)
