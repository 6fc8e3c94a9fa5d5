"""A price-level order book rebuilt from snapshots and absolute-quantity deltas.

Keys are ``Decimal`` so that ``"100.5"`` and ``"100.50"`` are one level; values keep the wire
strings, so a book re-published as a snapshot carries exactly the digits it was given.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

WireLevel = tuple[str, str]


class OrderBook:
    def __init__(self) -> None:
        self._bids: dict[Decimal, WireLevel] = {}
        self._asks: dict[Decimal, WireLevel] = {}
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
        _apply_side(self._bids, bids)
        _apply_side(self._asks, asks)
        if last_update_id is not None:
            self.last_update_id = last_update_id

    def bids(self, depth: int | None = None) -> list[WireLevel]:
        """Bid levels, best (highest) first."""
        return [self._bids[p] for p in sorted(self._bids, reverse=True)[:depth]]

    def asks(self, depth: int | None = None) -> list[WireLevel]:
        """Ask levels, best (lowest) first."""
        return [self._asks[p] for p in sorted(self._asks)[:depth]]

    def best_bid(self) -> Decimal | None:
        return max(self._bids) if self._bids else None

    def best_ask(self) -> Decimal | None:
        return min(self._asks) if self._asks else None

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)


def _apply_side(side: dict[Decimal, WireLevel], levels: Iterable[WireLevel]) -> None:
    for price, qty in levels:
        key = Decimal(price)
        if Decimal(qty) == 0:
            side.pop(key, None)  # removing an unknown level is normal
        else:
            side[key] = (price, qty)
