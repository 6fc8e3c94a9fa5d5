"""Rolling volume-weighted average price over a time window, in exact decimals.

The running sums are exact, not merely precise: every input obeys the decimal rule
(``schemas.rules``: at most 40 plain digits), so a product has at most 80 significant digits and a
sum of any number of them fits ``PRECISION`` digits; the arithmetic context traps ``Inexact``
anyway. Should a sum ever be inexact, or the window empty with sums that are not exactly zero,
the sums are rebuilt from the trades in the window and the repair is counted and reported
(``problem``) - one message can never leave the VWAP wrong for good.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from decimal import Context, Decimal, DecimalException, Inexact, InvalidOperation, Overflow, Rounded

PRECISION = 400
_EXACT = Context(prec=PRECISION, traps=[Inexact, Rounded, InvalidOperation, Overflow])
_DIVIDE = Context(prec=PRECISION)  # the average itself is rounded once, to VWAP_QUANTUM
_ZERO = Decimal(0)
VWAP_QUANTUM = Decimal("1e-10")


def _exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = _ZERO
    for value in values:
        total = _EXACT.add(total, value)
    return total


class RollingVwap:
    """VWAP of the trades whose event time lies within ``window_ns`` of the newest one."""

    def __init__(self, window_ns: int, audit_every: int = 4096) -> None:
        self.window_ns = window_ns
        #: Every this many trades the sums are recomputed and compared (a backstop: O(window) once
        #: per ``audit_every`` trades).
        self.audit_every = audit_every
        self._since_audit = 0
        self._trades: deque[tuple[int, Decimal, Decimal]] = deque()
        self._notional = _ZERO
        self._volume = _ZERO
        self.repairs = 0
        #: The last invariant break (what, and when: monotonic seconds), for health.
        self.problem: tuple[str, float] | None = None

    def add(self, ts_ns: int, price: Decimal, qty: Decimal) -> None:
        self.expire(ts_ns)  # first: an emptied window checks its sums before the new trade
        try:
            notional = _EXACT.multiply(price, qty)
            self._trades.append((ts_ns, notional, qty))
            self._notional = _EXACT.add(self._notional, notional)
            self._volume = _EXACT.add(self._volume, qty)
        except DecimalException as error:
            self._repair(f"inexact sum ({type(error).__name__})")
        self._since_audit += 1
        if self._since_audit >= self.audit_every:
            self.audit()

    def audit(self) -> None:
        """Recompute the sums from the window's trades; a difference is repaired and reported."""
        self._since_audit = 0
        try:
            same = (
                _exact_sum(n for _, n, _ in self._trades) == self._notional
                and _exact_sum(q for _, _, q in self._trades) == self._volume
            )
        except DecimalException:
            same = False
        if not same:
            self._repair("sums differed from the window's trades")

    def expire(self, now_ns: int) -> None:
        horizon = now_ns - self.window_ns
        trades = self._trades
        try:
            while trades and trades[0][0] <= horizon:
                _, notional, qty = trades.popleft()
                self._notional = _EXACT.subtract(self._notional, notional)
                self._volume = _EXACT.subtract(self._volume, qty)
        except DecimalException as error:
            self._repair(f"inexact sum ({type(error).__name__})")
        if not trades and (self._notional or self._volume):
            self._repair("sums not zero with an empty window")

    def _repair(self, what: str) -> None:
        """Rebuild the sums from the window's trades (exactly, or report that it cannot be)."""
        self.repairs += 1
        self.problem = (what, time.monotonic())
        try:
            self._notional = _exact_sum(n for _, n, _ in self._trades)
            self._volume = _exact_sum(q for _, _, q in self._trades)
        except DecimalException:
            self._trades.clear()
            self._notional = self._volume = _ZERO

    @property
    def value(self) -> Decimal | None:
        if not self._trades or self._volume <= 0:
            return None
        return _DIVIDE.divide(self._notional, self._volume).quantize(VWAP_QUANTUM, context=_DIVIDE)

    def __len__(self) -> int:
        return len(self._trades)
