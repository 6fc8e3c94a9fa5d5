"""Per-symbol market-data state (``md.<SYMBOL>.status``) and stale-stream detection.

A symbol is, in this order of precedence:

- ``down``: the venue refused it for good (HTTP 4xx for the symbol);
- ``reconnecting``: a connection carrying one of its streams is lost and being re-established;
- ``stale``: one of its streams has been silent past its threshold (depth@100ms:
  BINANCE_STALE_DEPTH_S; trades are irregular: BINANCE_STALE_TRADES_S);
- ``resyncing``: its book is being rebuilt;
- ``live`` otherwise.

Every change is reported, once, as a ``Status`` whose reason says what changed. Time is the frames'
receipt time (ns), so the per-frame cost is one dict store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from schemas import Status

Stream = str  # "trades" | "depth"


class SymbolStates:
    def __init__(
        self,
        exchange: str,
        symbols: list[str],
        streams: list[Stream],
        stale_after_s: dict[Stream, float],
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.exchange = exchange
        self.streams = streams
        self._stale_after_ns = {s: int(t * 1e9) for s, t in stale_after_s.items()}
        self._clock_ns = clock_ns
        start = clock_ns()
        self._last_seen: dict[tuple[str, Stream], int] = {(sym, s): start for sym in symbols for s in streams}
        self.stale: set[tuple[str, Stream]] = set()
        self.resyncing: set[str] = set()
        self.reconnecting: set[str] = set()
        self.down_reasons: dict[str, str] = {}
        self._book_reasons: dict[str, str] = {}  # why each resyncing book is resyncing
        self._reported: dict[str, str] = {}
        self.reasons: dict[str, str] = {}  # the reason of each symbol's last reported state

    def state(self, symbol: str) -> str:
        if symbol in self.down_reasons:
            return "down"
        if symbol in self.reconnecting:
            return "reconnecting"
        if any((symbol, s) in self.stale for s in self.streams):
            return "stale"
        return "resyncing" if symbol in self.resyncing else "live"

    def states(self) -> dict[str, str]:
        return {symbol: self.state(symbol) for symbol in sorted({sym for sym, _ in self._last_seen})}

    def seen(self, symbol: str, stream: Stream, ts_ns: int) -> Status | None:
        """A frame arrived (the hot path: a dict store unless the stream was stale)."""
        key = (symbol, stream)
        self._last_seen[key] = ts_ns
        if key in self.stale:
            self.stale.discard(key)
            reason = f"{stream} data flows again"
            if symbol in self.resyncing:
                reason += f"; {self._book_reasons.get(symbol, 'resyncing')}"
            return self._report(symbol, stream, reason)
        return None

    def book(self, symbol: str, synced: bool, reason: str) -> Status | None:
        if synced:
            self.resyncing.discard(symbol)
        else:
            self.resyncing.add(symbol)
            self._book_reasons[symbol] = reason
        return self._report(symbol, "depth", reason)

    def connection(self, symbols: Iterable[str], up: bool, reason: str) -> list[Status]:
        """A connection carrying these symbols' streams was lost (``up=False``) or is back."""
        changes = []
        now = self._clock_ns()
        for symbol in symbols:
            if up:
                self.reconnecting.discard(symbol)
                for stream in self.streams:  # silence while reconnecting is not staleness
                    self._last_seen[(symbol, stream)] = now
            else:
                self.reconnecting.add(symbol)
            status = self._report(symbol, "all", reason)
            if status is not None:
                changes.append(status)
        return changes

    def down(self, symbol: str, reason: str) -> Status | None:
        """The venue refused ``symbol`` for good: ``down`` until the feed restarts."""
        self.down_reasons[symbol] = reason
        return self._report(symbol, "all", reason)

    def check(self) -> list[Status]:
        """Periodic: flag streams silent past their threshold (not while down or reconnecting)."""
        now = self._clock_ns()
        changes = []
        for key, last in self._last_seen.items():
            symbol, stream = key
            if key in self.stale or symbol in self.down_reasons or symbol in self.reconnecting:
                continue
            if now - last > self._stale_after_ns[stream]:
                self.stale.add(key)
                status = self._report(symbol, stream, f"no {stream} for {(now - last) / 1e9:.1f}s")
                if status is not None:
                    changes.append(status)
        return changes

    def threshold_s(self, stream: Stream) -> float:
        """How long ``stream`` may be silent before it is stale."""
        return self._stale_after_ns[stream] / 1e9

    def _report(self, symbol: str, stream: Stream, reason: str) -> Status | None:
        state = self.state(symbol)
        if self._reported.get(symbol) == state:
            return None
        self._reported[symbol] = state
        self.reasons[symbol] = reason
        return Status(
            exchange=self.exchange,
            symbol=symbol,
            stream=stream,
            state=state,
            reason=reason,
            ts=self._clock_ns(),
        )
