"""Per-symbol rolling context: recent trades, rates, VWAP, last price, and the book from depth.

Every update is O(1) amortised (the book applies only the changed levels); the snapshot reply is
built on request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from schemas import ContextSnapshot, DepthUpdate, TradeTick
from schemas.types import decimal_to_wire
from services.common.book import OrderBook
from services.common.logging import get_logger
from services.common.rates import RollingCounter
from services.common.vwap import RollingVwap

log = get_logger("context")


class SymbolContext:
    def __init__(
        self, symbol: str, history: int, vwap_window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.symbol = symbol
        self.exchange: str | None = None
        self.trades: deque[TradeTick] = deque(maxlen=history)
        self.rate = RollingCounter(clock=clock)
        self.vwap_window_s = vwap_window_s
        self.vwap = RollingVwap(int(vwap_window_s * 1e9))
        self.trade_count = 0
        self.book = OrderBook()
        self.book_synced = False
        self.book_gaps = 0
        self.stale_deltas = 0

    def on_trade(self, tick: TradeTick) -> None:
        self.exchange = tick.exchange
        self.trades.append(tick)
        self.rate.add()
        self.vwap.add(tick.ts_event, tick.price, tick.qty)
        self.trade_count += 1

    def on_depth(self, update: DepthUpdate) -> None:
        self.exchange = update.exchange
        bids = [(decimal_to_wire(p), decimal_to_wire(q)) for p, q in update.bids]
        asks = [(decimal_to_wire(p), decimal_to_wire(q)) for p, q in update.asks]
        if update.is_snapshot:
            self.book.reset(bids, asks, update.last_update_id)
            self.book_synced = True
            return
        if not self.book_synced:
            return  # wait for a snapshot: a delta on an unknown book would be wrong
        last = self.book.last_update_id or 0
        if update.last_update_id <= last:
            self.stale_deltas += 1
            return
        if self._is_gap(update, last):
            self.book_gaps += 1
            self.book_synced = False
            log.warning(
                "book_gap",
                symbol=self.symbol,
                book_update_id=last,
                first_update_id=update.first_update_id,
                prev_last_update_id=update.prev_last_update_id,
            )
            return
        self.book.apply(bids, asks, update.last_update_id)

    @staticmethod
    def _is_gap(update: DepthUpdate, last: int) -> bool:
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
            recent_trades=list(self.trades),
            ts=time.time_ns(),
        )
