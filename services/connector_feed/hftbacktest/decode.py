"""hftbacktest event arrays -> the feed's ``Trade`` / ``Depth`` events, in batches (pure, no clock).

What a subscriber receives is hftbacktest's *local* view: the rows flagged ``LOCAL_EVENT``, in file
order (= ``local_ts`` order); ``EXCH``-only copies (rows split by ``correct_event_order``) and rows
with neither flag are skipped, as hftbacktest's local processor skips them. Rows sharing one
``(exch_ts, local_ts)`` form one batch: its trades (``TRADE|BUY/SELL`` -> aggressor side), then at
most one depth message. The depth message is the change of the book hftbacktest shows
(``HbtDepth``, its ``HashMapMarketDepth`` in Python): a delta of absolute levels, or - when the
batch holds ``DEPTH_CLEAR`` / ``DEPTH_SNAPSHOT`` rows - the whole book as a snapshot. So after
every depth message our book equals hftbacktest's, level for level.

Prices and quantities become exact decimals on the instrument's grid: ``round(px / tick)`` ticks
(hftbacktest's own rounding) times ``HBT_TICK_SIZE``, lots likewise; a value further than
``GRID_TOLERANCE`` of a step from the grid is counted (``off_tick_prices`` / ``off_lot_qtys``).
hftbacktest files carry no venue update ids and (from its converters) no trade ids: depth message
n gets ``first_update_id = last_update_id = n`` and ``prev_last_update_id = n - 1`` (a gap-free
chain), a trade gets ``ival`` when it is positive (our recorder stores the trade id there) and
otherwise its 1-based position among the replay's trades.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.connector_feed.events import Depth, Event, Trade, WireLevel
from services.connector_feed.hftbacktest.depth import HbtDepth, ticks_in_range
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    KIND_MASK,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    Rows,
    rust_round,
    to_wire,
)

#: Off the grid by more than this share of a step (plus float noise) counts as off-grid.
GRID_TOLERANCE = 1e-6
Batch = list[Event]


def steps(values: NDArray[np.float64], step: float) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """``rust_round(v / step)`` for every value, and which finite values are off the grid."""
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = values / step
        magnitude = np.abs(ratio)
        whole = np.floor(magnitude)
        rounded = np.copysign(whole + (magnitude - whole >= 0.5), ratio)
        units = np.zeros(len(values), dtype=np.int64)
        fits = np.isfinite(rounded) & (rounded >= -(2.0**63)) & (rounded < 2.0**63)
        units[fits] = rounded[fits].astype(np.int64)
        units[rounded >= 2.0**63] = np.iinfo(np.int64).max  # saturating, as Rust's ``as i64``
        units[rounded < -(2.0**63)] = np.iinfo(np.int64).min
        off = fits & (np.abs(ratio - rounded) > GRID_TOLERANCE + magnitude * 4.5e-16)
    return units, off


@dataclass
class ReplayStats:
    rows: int = 0
    local_rows: int = 0
    exch_only_rows: int = 0
    unflagged_rows: int = 0
    trades: int = 0
    depth_messages: int = 0
    snapshots: int = 0
    off_tick_prices: int = 0
    off_lot_qtys: int = 0
    local_ts_backwards: int = 0
    #: Rows we did not publish, by reason (kinds we do not map, values a contract cannot carry).
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class HbtConverter:
    """One instrument's rows -> batches. Feed it the files in order (``convert`` per file)."""

    def __init__(self, exchange: str, symbol: str, tick_size: Decimal, lot_size: Decimal) -> None:
        self.exchange, self.symbol = exchange, symbol
        self.tick_size, self.lot_size = tick_size, lot_size
        self._tick, self._lot = float(tick_size), float(lot_size)
        self.depth = HbtDepth()
        self.stats = ReplayStats()
        self._update_id = 0
        self._pending_snapshot = False
        self._last_local: int | None = None
        self._prices: dict[int, str] = {}

    # ---- the initial snapshot (hftbacktest's ``initial_snapshot``) ---------------------------

    def initial_snapshot(self, rows: Rows) -> None:
        """Start from this book (an ``_eod.npz``); it is published before the first batch."""
        ticks, _ = steps(rows["px"].astype(np.float64), self._tick)
        lots, _ = steps(rows["qty"].astype(np.float64), self._lot)
        levels: list[tuple[bool, int, float]] = []
        for ev, tick, lot, qty in zip(
            rows["ev"].tolist(), ticks.tolist(), lots.tolist(), rows["qty"].tolist(), strict=True
        ):
            if not ev & (BUY_EVENT | SELL_EVENT):
                continue
            if tick <= 0 or lot <= 0:  # hftbacktest would keep an empty or unpriceable level
                self.stats.skip("snapshot_level_not_on_grid")
                continue
            levels.append((bool(ev & BUY_EVENT), tick, qty))
        self.depth.apply_snapshot(levels)
        self._pending_snapshot = True

    # ---- rows -> batches -------------------------------------------------------------------------

    def convert(self, rows: Rows) -> Iterator[Batch]:
        """The batches of one file's rows, in order."""
        ev_all = rows["ev"]
        local = (ev_all & LOCAL_EVENT) != 0
        self.stats.rows += len(rows)
        self.stats.local_rows += int(local.sum())
        self.stats.exch_only_rows += int((((ev_all & EXCH_EVENT) != 0) & ~local).sum())
        self.stats.unflagged_rows += int(((ev_all & (EXCH_EVENT | LOCAL_EVENT)) == 0).sum())
        view = rows[local]
        ticks, off_tick = steps(view["px"].astype(np.float64), self._tick)
        lots, off_lot = steps(view["qty"].astype(np.float64), self._lot)
        columns = (
            view["ev"].tolist(),
            view["exch_ts"].tolist(),
            view["local_ts"].tolist(),
            view["px"].tolist(),
            view["qty"].tolist(),
            view["ival"].tolist(),
            ticks.tolist(),
            lots.tolist(),
            off_tick.tolist(),
            off_lot.tolist(),
        )
        exch, stamp = columns[1], columns[2]
        start, n = 0, len(view)
        while start < n:
            end = start + 1
            while end < n and exch[end] == exch[start] and stamp[end] == stamp[start]:
                end += 1
            batch = self._batch(columns, start, end)
            if batch:
                yield batch
            start = end

    def _batch(self, c: tuple[list[Any], ...], start: int, end: int) -> Batch:
        ev, exch, stamp, px, qty, ival, ticks, lots, off_tick, off_lot = c
        exch_ts, local_ts = exch[start], stamp[start]
        if self._last_local is not None and local_ts < self._last_local:
            self.stats.local_ts_backwards += 1
        self._last_local = local_ts
        out: Batch = []
        if exch_ts < 0 or local_ts < 0:
            for _ in range(start, end):
                self.stats.skip("negative_timestamp")
            return out
        if self._pending_snapshot:
            self._pending_snapshot = False
            out.append(self._depth_message(True, exch_ts, local_ts, None, None))
        depth = self.depth
        old_bid, old_ask = depth.best_bid, depth.best_ask
        depth.touched_bids.clear()
        depth.touched_asks.clear()
        applied = snapshot = False
        for i in range(start, end):
            flags, tick, lot = ev[i], ticks[i], lots[i]
            kind = flags & KIND_MASK
            side = 1 if flags & BUY_EVENT else -1 if flags & SELL_EVENT else 0
            if kind == DEPTH_CLEAR_EVENT:
                finite = px[i] == px[i] and abs(px[i]) != float("inf")
                upto = tick if finite else None
                if side == 1:
                    depth.clear_bids(upto)
                elif side == -1:
                    depth.clear_asks(upto)
                else:
                    depth.clear_all()
                applied = snapshot = True
                continue
            if kind not in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, TRADE_EVENT):
                self.stats.skip("bbo_rows" if kind == DEPTH_BBO_EVENT else f"kind_{kind}_rows")
                continue
            if side == 0:
                self.stats.skip("rows_without_side")
                continue
            if tick <= 0:
                self.stats.skip("non_positive_or_nan_price")
                continue
            self.stats.off_tick_prices += off_tick[i]
            self.stats.off_lot_qtys += off_lot[i]
            if kind == TRADE_EVENT:
                trade = self._trade(side, tick, lot, ival[i], exch_ts, local_ts)
                if trade is not None:
                    out.append(trade)
                continue
            if side == 1:
                depth.update_bid(tick, qty[i], lot)
            else:
                depth.update_ask(tick, qty[i], lot)
            applied = True
            snapshot = snapshot or kind == DEPTH_SNAPSHOT_EVENT
        if applied:
            out.append(self._depth_message(snapshot, exch_ts, local_ts, old_bid, old_ask))
        return out

    def _trade(self, side: int, tick: int, lot: int, ival: int, exch_ts: int, local_ts: int) -> Trade | None:
        if lot <= 0:
            self.stats.skip("trades_without_qty")
            return None
        self.stats.trades += 1
        sell = side == -1
        return Trade(
            self.exchange,
            self.symbol,
            ival if ival > 0 else self.stats.trades,
            self._price(tick),
            to_wire(lot, self.lot_size),
            "sell" if sell else "buy",
            sell,
            exch_ts,
            local_ts,
        )

    def _depth_message(
        self, snapshot: bool, exch_ts: int, local_ts: int, old_bid: int | None, old_ask: int | None
    ) -> Depth:
        depth = self.depth
        if snapshot or old_bid is None or old_ask is None:
            bids = [(t, rust_round(q / self._lot)) for t, q in depth.visible_bids()]
            asks = [(t, rust_round(q / self._lot)) for t, q in depth.visible_asks()]
            self.stats.snapshots += 1
        else:
            bids = _changes(depth.bids, depth.touched_bids, old_bid, depth.best_bid, self._lot, True)
            asks = _changes(depth.asks, depth.touched_asks, old_ask, depth.best_ask, self._lot, False)
        self._update_id += 1
        self.stats.depth_messages += 1
        n = self._update_id
        return Depth(
            self.exchange,
            self.symbol,
            self._levels(bids),
            self._levels(asks),
            snapshot or old_bid is None,
            n,
            n,
            n - 1 if n > 1 else None,
            exch_ts,
            local_ts,
        )

    def _levels(self, levels: list[tuple[int, int]]) -> list[WireLevel]:
        lot_size = self.lot_size
        return [(self._price(t), to_wire(lots, lot_size) if lots > 0 else "0") for t, lots in levels]

    def _price(self, tick: int) -> str:
        text = self._prices.get(tick)
        if text is None:
            if len(self._prices) > 100_000:
                self._prices.clear()
            text = self._prices[tick] = to_wire(tick, self.tick_size)
        return text


def _changes(
    levels: dict[int, float], touched: dict[int, float], old_best: int, new_best: int, lot: float, bids: bool
) -> list[tuple[int, int]]:
    """How the visible side changed: ``(tick, lots)``, lots 0 for a level that went (best first)."""
    candidates = set(touched)
    if new_best != old_best:  # levels that came out from, or went under, the other side
        low, high = (old_best, new_best) if old_best < new_best else (new_best, old_best)
        if bids:
            candidates.update(ticks_in_range(levels, low + 1, high))
        else:
            candidates.update(ticks_in_range(levels, low, high - 1))
    out: list[tuple[int, int]] = []
    for tick in candidates:
        before_qty = touched.get(tick, levels.get(tick, 0.0))
        was = (tick <= old_best) if bids else (tick >= old_best)
        now = (tick <= new_best) if bids else (tick >= new_best)
        before = rust_round(before_qty / lot) if was and before_qty else 0
        after = rust_round(levels[tick] / lot) if now and tick in levels else 0
        if before != after:
            out.append((tick, after))
    out.sort(reverse=bids)
    return out
