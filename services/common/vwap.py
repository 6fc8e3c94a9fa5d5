"""Rolling volume-weighted average price over a time window, exact: scaled integers.

A decimal is kept as ``(coefficient, scale)``, the integer ``c`` and the number of fraction
digits ``s`` of ``c / 10**s`` (``scaled``: ``"50012.34"`` -> ``(5001234, 2)``). The running sums
are Python integers at the largest scale in the window, so they are exact by construction - no
context, no rounding, at any number of digits - and about three times cheaper than ``Decimal``
arithmetic. The average itself is rounded once, half to even, to ``VWAP_QUANTUM`` (1e-10): the
same value ``Decimal`` division would give.

Self-repairing all the same: the sums are rebuilt from the window's trades, and the repair counted
and reported (``problem``), when the window empties with sums that are not zero, or when an audit
(every ``max(audit_every, 8 * len(window))`` trades: O(1) amortised at any window size) finds them
different from the window's trades - one bad update can never leave the VWAP wrong for good. An
input that is not a finite decimal is refused the same way, and the trade left out.
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Context, Decimal

VWAP_PLACES = 10
VWAP_QUANTUM = Decimal(1).scaleb(-VWAP_PLACES)
#: Wide enough for the coefficient of any average (``Decimal.scaleb`` rounds to its context).
_WIDE = Context(prec=1000)
#: Decimal strings (and ``Decimal``s) already converted, bounded: cleared when full.
_SCALED_MAX = 65_536
#: Longer strings, or larger exponents, are refused (the wire's rule allows 40 characters).
_MAX_DIGITS = 200
_scaled_cache: dict[str | Decimal, tuple[int, int]] = {}
#: Powers of ten by exponent; grown when a larger scale appears (``_powers``).
POW10 = [10**k for k in range(128)]


def _powers(upto: int) -> None:
    while len(POW10) <= upto:
        POW10.append(10 ** len(POW10))


def scaled(value: str | Decimal) -> tuple[int, int]:
    """``(coefficient, scale)`` of a plain decimal string (the wire's rule) or a finite ``Decimal``;
    ``ValueError`` for anything else. Cached: a venue's prices and sizes repeat."""
    cached = _scaled_cache.get(value)
    if cached is not None:
        return cached
    if isinstance(value, str):
        whole, _, fraction = value.partition(".")
        digits = whole + fraction
        if not (whole and digits.isascii() and digits.isdigit() and len(value) <= _MAX_DIGITS):
            raise ValueError(f"not a plain decimal: {value[:50]!r}")  # (``int`` would take more)
        result = int(digits), len(fraction)
    else:
        sign, figures, exponent = value.as_tuple()
        if not isinstance(exponent, int) or abs(exponent) > _MAX_DIGITS or len(figures) > _MAX_DIGITS:
            raise ValueError(f"not a finite decimal of at most {_MAX_DIGITS} digits: {str(value)[:50]}")
        coefficient = int("".join(map(str, figures))) * (-1 if sign else 1)
        result = (coefficient * 10**exponent, 0) if exponent >= 0 else (coefficient, -exponent)
    if len(_scaled_cache) >= _SCALED_MAX:
        _scaled_cache.clear()
    _scaled_cache[value] = result
    _powers(result[1] + VWAP_PLACES)
    return result


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (``denominator > 0``) rounded to an integer, ties to even."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


class RollingVwap:
    """VWAP of the trades whose event time lies within ``window_ns`` of the newest one."""

    def __init__(self, window_ns: int, audit_every: int = 4096) -> None:
        self.window_ns = window_ns
        self.audit_every = audit_every
        self._since_audit = 0
        self._audit_at = audit_every
        #: (ts_ns, notional coefficient, its scale, qty coefficient, its scale)
        self._trades: deque[tuple[int, int, int, int, int]] = deque()
        self._notional = 0  # at scale _notional_scale
        self._volume = 0  # at scale _volume_scale
        self._notional_scale = 0
        self._volume_scale = 0
        self._rounded: int | None = None  # the average x 10**VWAP_PLACES, until the next change
        self.repairs = 0
        #: The last invariant break (what, and when: monotonic seconds), for health.
        self.problem: tuple[str, float] | None = None

    def add(self, ts_ns: int, price: str | Decimal, qty: str | Decimal) -> None:
        """A trade: price and quantity as wire strings (or ``Decimal``)."""
        trades = self._trades
        if not trades or trades[0][0] <= ts_ns - self.window_ns:
            self.expire(ts_ns)  # first: an emptied window checks its sums before the new trade
        price_cs = _scaled_cache.get(price)
        qty_cs = _scaled_cache.get(qty)
        if price_cs is None or qty_cs is None:
            try:
                price_cs, qty_cs = scaled(price), scaled(qty)
            except (ValueError, TypeError) as error:
                self._repair(f"unusable trade ({error})")
                return
        qty_c, qty_s = qty_cs
        notional, notional_s = price_cs[0] * qty_c, price_cs[1] + qty_s
        if notional_s == self._notional_scale:  # the common case: a venue's fixed tick and lot
            self._notional += notional
        else:
            self._add_rescaled(notional, notional_s)
        if qty_s == self._volume_scale:
            self._volume += qty_c
        else:
            if qty_s > self._volume_scale:
                self._volume *= POW10[qty_s - self._volume_scale]
                self._volume_scale = qty_s
            self._volume += qty_c * POW10[self._volume_scale - qty_s]
        trades.append((ts_ns, notional, notional_s, qty_c, qty_s))
        self._rounded = None
        self._since_audit += 1
        if self._since_audit >= self._audit_at:
            self.audit()

    def _add_rescaled(self, notional: int, scale: int) -> None:
        if scale > self._notional_scale:
            _powers(scale + VWAP_PLACES)
            self._notional *= POW10[scale - self._notional_scale]
            self._notional_scale = scale
        self._notional += notional * POW10[self._notional_scale - scale]

    def _sums(self) -> tuple[int, int]:
        """The window's sums, recomputed from its trades."""
        n_scale, v_scale = self._notional_scale, self._volume_scale
        notional = sum(n * POW10[n_scale - ns] for _, n, ns, _, _ in self._trades)
        volume = sum(q * POW10[v_scale - qs] for _, _, _, q, qs in self._trades)
        return notional, volume

    def audit(self) -> None:
        """Recompute the sums from the window's trades; a difference is repaired and reported."""
        self._since_audit = 0
        self._audit_at = max(self.audit_every, 8 * len(self._trades))
        if self._sums() != (self._notional, self._volume):
            self._repair("sums differed from the window's trades")

    def expire(self, now_ns: int) -> None:
        horizon = now_ns - self.window_ns
        trades = self._trades
        if trades and trades[0][0] <= horizon:
            n_pow, v_pow = self._notional_scale, self._volume_scale
            while trades and trades[0][0] <= horizon:
                _, notional, notional_s, qty, qty_s = trades.popleft()
                self._notional -= notional * POW10[n_pow - notional_s]
                self._volume -= qty * POW10[v_pow - qty_s]
            self._rounded = None
        if not trades:
            if self._notional or self._volume:
                self._repair("sums not zero with an empty window")
            self._notional_scale = self._volume_scale = 0

    def _repair(self, what: str) -> None:
        """Rebuild the sums from the window's trades (integers: always exactly)."""
        self.repairs += 1
        self.problem = (what, time.monotonic())
        self._notional, self._volume = self._sums()
        self._rounded = None

    def fraction(self) -> tuple[int, int] | None:
        """The exact VWAP as ``numerator / denominator`` (both integers, denominator > 0), unrounded:
        for exact comparisons without a division."""
        if not self._trades or self._volume <= 0:
            return None
        return (
            self._notional * POW10[self._volume_scale],
            self._volume * POW10[self._notional_scale],
        )

    def scaled_value(self) -> int | None:
        """The VWAP x 10**VWAP_PLACES, rounded half to even (exact integer comparisons)."""
        if self._rounded is None:
            if not self._trades or self._volume <= 0:
                return None
            numerator = self._notional * POW10[self._volume_scale + VWAP_PLACES]
            self._rounded = round_half_even(numerator, self._volume * POW10[self._notional_scale])
        return self._rounded

    @property
    def value(self) -> Decimal | None:
        rounded = self.scaled_value()
        return None if rounded is None else Decimal(rounded).scaleb(-VWAP_PLACES, _WIDE)

    def __len__(self) -> int:
        return len(self._trades)
