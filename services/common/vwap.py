"""Rolling volume-weighted average price over a time window, in exact decimals."""

from __future__ import annotations

from collections import deque
from decimal import Context, Decimal

# Sums of price*qty need more digits than the default 28 to stay exact; dividing rounds once.
_EXACT = Context(prec=60)
_ZERO = Decimal(0)
VWAP_QUANTUM = Decimal("1e-10")


class RollingVwap:
    """VWAP of the trades whose event time lies within ``window_ns`` of the newest one."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._trades: deque[tuple[int, Decimal, Decimal]] = deque()
        self._notional = _ZERO
        self._volume = _ZERO

    def add(self, ts_ns: int, price: Decimal, qty: Decimal) -> None:
        notional = _EXACT.multiply(price, qty)
        self._trades.append((ts_ns, notional, qty))
        self._notional = _EXACT.add(self._notional, notional)
        self._volume = _EXACT.add(self._volume, qty)
        self.expire(ts_ns)

    def expire(self, now_ns: int) -> None:
        horizon = now_ns - self.window_ns
        trades = self._trades
        while trades and trades[0][0] <= horizon:
            _, notional, qty = trades.popleft()
            self._notional = _EXACT.subtract(self._notional, notional)
            self._volume = _EXACT.subtract(self._volume, qty)

    @property
    def value(self) -> Decimal | None:
        if not self._trades or self._volume == 0:
            return None
        return _EXACT.divide(self._notional, self._volume).quantize(VWAP_QUANTUM, context=_EXACT)

    def __len__(self) -> int:
        return len(self._trades)
