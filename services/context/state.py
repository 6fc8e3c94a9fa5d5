"""Per-instrument rolling context: recent trades, rates, VWAP, last price, and the book from depth.

Every update is O(1) amortised; the snapshot reply is built on request. The book is a
``BookKeeper`` (``services.common.book_keeper``): synced from the feed's book on request and the
sequenced deltas, or resyncing - never silently wrong.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

from schemas import ContextSnapshot, TradeTick
from schemas.wire import DepthMsg, TradeMsg
from services.common.book import OrderBook
from services.common.book_keeper import BookKeeper, Requester
from services.common.logging import get_logger
from services.common.rates import RollingCounter
from services.common.vwap import RollingVwap

log = get_logger("context")

RECENT_S = 60.0


class SymbolContext:
    def __init__(
        self,
        symbol: str,
        history: int,
        vwap_window_s: float,
        request: Requester,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.symbol = symbol
        self.exchange: str | None = None
        self.trades: deque[TradeMsg] = deque(maxlen=history)
        self.rate = RollingCounter(clock=clock)
        self.vwap_window_s = vwap_window_s
        self.vwap = RollingVwap(int(vwap_window_s * 1e9))
        self.trade_count = 0
        self.keeper = BookKeeper(symbol, request)
        self.problem: tuple[str, float] | None = None  # the last broken invariant, for health

    @property
    def book(self) -> OrderBook:
        return self.keeper.book

    @property
    def book_synced(self) -> bool:
        return self.keeper.synced

    @property
    def book_gaps(self) -> int:
        return self.keeper.stats.gaps

    def on_trade(self, tick: TradeMsg) -> None:
        self.exchange = tick.exchange
        self.trades.append(tick)
        self.rate.add()
        self.vwap.add(tick.ts_event, tick.price, tick.qty)  # the exact wire strings
        self.trade_count += 1

    def on_depth(self, update: DepthMsg) -> None:
        self.exchange = update.exchange
        self.keeper.on_depth(update)

    def check_book(self) -> None:
        """A synced book that is crossed is not the venue's: resync it (and report it)."""
        if not self.keeper.synced:
            return
        best_bid, best_ask = self.book.best_bid(), self.book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            why = f"book crossed (best bid {best_bid} >= best ask {best_ask})"
            self.problem = (why, time.monotonic())
            log.warning("book_invariant_broken", symbol=self.symbol, reason=why)
            self.keeper.lost("crossed_book", why)

    def problems(self) -> list[str]:
        """Broken invariants in the last minute, and a book being rebuilt (health: degraded)."""
        self.check_book()
        now = time.monotonic()
        found = [
            f"{self.symbol}: {recorded[0]}"
            for recorded in (self.problem, self.vwap.problem)
            if recorded is not None and now - recorded[1] <= RECENT_S
        ]
        if not self.keeper.synced:
            found.append(f"{self.symbol} book resyncing: {self.keeper.reason}")
        return found

    def snapshot(self) -> ContextSnapshot:
        self.check_book()
        best_bid, best_ask = self.book.best_bid(), self.book.best_ask()
        synced = self.book_synced
        last = self.trades[-1] if self.trades else None
        return ContextSnapshot(
            symbol=self.symbol,
            exchange=self.exchange,
            last_price=last.price if last else None,
            last_trade_ts=last.ts_event if last else None,
            trade_count=self.trade_count,
            trades_per_minute=self.rate.count(),
            trades_per_second=round(self.rate.rate(), 6),
            vwap=self.vwap.value,
            vwap_window_s=self.vwap_window_s,
            vwap_trades=len(self.vwap),
            best_bid=best_bid if synced else None,
            best_ask=best_ask if synced else None,
            spread=best_ask - best_bid if synced and best_bid is not None and best_ask is not None else None,
            book_synced=synced,
            book_update_id=self.book.last_update_id if synced else None,
            bid_levels=len(self.book.bids()) if synced else 0,
            ask_levels=len(self.book.asks()) if synced else 0,
            book_gaps=self.book_gaps,
            recent_trades=[TradeTick.model_validate(msgspec.structs.asdict(t)) for t in self.trades],
            ts=time.time_ns(),
        )
