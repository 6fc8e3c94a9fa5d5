"""Per-symbol rolling context: recent trades, rates, VWAP, last price, and the book from depth.

Every update is O(1) amortised (the book applies only the changed levels); the snapshot reply is
built on request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal

import msgspec

from schemas import ContextSnapshot, TradeTick
from schemas.wire import DepthMsg, TradeMsg
from services.common.book import OrderBook
from services.common.logging import LogSampler, get_logger
from services.common.rates import RollingCounter
from services.common.vwap import RollingVwap

log = get_logger("context")

#: Deltas in a row older than the book before the book is declared lost (waits for a snapshot).
MAX_STALE_STREAK = 100
RECENT_S = 60.0


class SymbolContext:
    def __init__(
        self, symbol: str, history: int, vwap_window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.symbol = symbol
        self.exchange: str | None = None
        self.trades: deque[TradeMsg] = deque(maxlen=history)
        self.rate = RollingCounter(clock=clock)
        self.vwap_window_s = vwap_window_s
        self.vwap = RollingVwap(int(vwap_window_s * 1e9))
        self.trade_count = 0
        self.book = OrderBook()
        self.book_synced = False
        self.book_gaps = 0
        self.stale_deltas = 0
        self._stale_streak = 0
        self.problem: tuple[str, float] | None = None  # the last broken invariant, for health
        self._log_sampler = LogSampler()

    def on_trade(self, tick: TradeMsg) -> None:
        self.exchange = tick.exchange
        self.trades.append(tick)
        self.rate.add()
        self.vwap.add(tick.ts_event, Decimal(tick.price), Decimal(tick.qty))
        self.trade_count += 1

    def on_depth(self, update: DepthMsg) -> None:
        self.exchange = update.exchange
        bids, asks = update.bids, update.asks
        if update.is_snapshot:
            self.book.reset(bids, asks, update.last_update_id)
            self.book_synced = True
            self._stale_streak = 0
            return
        if not self.book_synced:
            return  # wait for a snapshot: a delta on an unknown book would be wrong
        last = self.book.last_update_id or 0
        if update.last_update_id <= last:
            self.stale_deltas += 1
            self._stale_streak += 1
            if self._stale_streak > MAX_STALE_STREAK:  # a book id from nowhere would stall it for good
                self._lose_book(f"{self._stale_streak} deltas in a row older than the book's id {last}")
            return
        self._stale_streak = 0
        if self._is_gap(update, last):
            self.book_gaps += 1
            self.book_synced = False
            if self._log_sampler.allow("book_gap") is not None:
                log.warning(
                    "book_gap",
                    symbol=self.symbol,
                    book_update_id=last,
                    first_update_id=update.first_update_id,
                    prev_last_update_id=update.prev_last_update_id,
                )
            return
        self.book.apply(bids, asks, update.last_update_id)

    def _lose_book(self, why: str) -> None:
        self.book_synced = False
        self._stale_streak = 0
        self.problem = (why, time.monotonic())
        log.warning("book_invariant_broken", symbol=self.symbol, reason=why)

    def problems(self) -> list[str]:
        """Broken invariants in the last minute (health: degraded), each with its reason."""
        now = time.monotonic()
        found = []
        for recorded in (self.problem, self.vwap.problem):
            if recorded is not None and now - recorded[1] <= RECENT_S:
                found.append(f"{self.symbol}: {recorded[0]}")
        if self.book_synced:
            best_bid, best_ask = self.book.best_bid(), self.book.best_ask()
            if best_bid is not None and best_ask is not None and best_bid >= best_ask:
                found.append(f"{self.symbol}: book crossed (best bid {best_bid} >= best ask {best_ask})")
        return found

    @staticmethod
    def _is_gap(update: DepthMsg, last: int) -> bool:
        if update.prev_last_update_id is not None:  # venues with a chain (Binance futures ``pu``)
            return update.prev_last_update_id != last
        first = update.first_update_id if update.first_update_id is not None else update.last_update_id
        return first > last + 1

    def snapshot(self) -> ContextSnapshot:
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
