"""Which instruments a consumer follows: what the feed really publishes, for the SYMBOLS it was given.

Consumers subscribe to ``md.*.trades`` / ``md.*.depth`` and follow every instrument id that is
one of SYMBOLS or a Binance derivative of one: ``BTCUSDT`` follows ``BTCUSDT`` (spot),
``BTCUSDT-PERP`` (USD-M perpetual) and ``BTCUSDT_250627`` (a delivery contract). So one
``SYMBOLS=BTCUSDT`` serves whichever market the feed runs, with no venue setting in the consumers;
``SYMBOLS=BTCUSDT-PERP`` follows only the perpetual. A consumer follows at most MAX_INSTRUMENTS
(a flood of forged ids cannot grow its state).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_INSTRUMENTS = 1000


class Instruments:
    """The instrument ids a consumer follows, decided once per id (a dict lookup per message after)."""

    def __init__(self, symbols: Iterable[str], limit: int = MAX_INSTRUMENTS) -> None:
        self.symbols = frozenset(symbols)
        self.limit = limit
        #: Each id seen -> whether it is followed (read it directly on a hot path; ``follows`` fills it).
        self.decided: dict[str, bool] = {}
        self.followed: list[str] = []
        self.refused_over_limit = 0

    def follows(self, instrument: str) -> bool:
        decided = self.decided.get(instrument)
        if decided is not None:
            return decided
        wanted = tracks(instrument, self.symbols)
        if wanted and len(self.followed) >= self.limit:
            self.refused_over_limit += 1
            return False
        if len(self.decided) < 10 * self.limit:  # bounded memory of ids seen
            self.decided[instrument] = wanted
        if wanted:
            self.followed.append(instrument)
        return wanted


def tracks(instrument: str, symbols: frozenset[str]) -> bool:
    """``instrument`` is one of ``symbols`` or a derivative id of one (``-PERP``, ``_<expiry>``)."""
    if instrument in symbols:
        return True
    base = instrument.removesuffix("-PERP")
    if base != instrument:
        return base in symbols
    head, sep, _ = instrument.rpartition("_")
    return bool(sep) and head in symbols
