"""Our contracts -> hftbacktest event rows (pure): what ``hftfeed record-npz`` writes.

A trade is one row ``TRADE|BUY/SELL`` (the aggressor), ``ival`` = ``trade_id``. A delta is one
``DEPTH|BUY`` row per bid and ``DEPTH|SELL`` row per ask (absolute quantity, 0 removes), ``ival`` =
``last_update_id``. A snapshot (``is_snapshot``) replaces the whole book, so it becomes
``DEPTH_CLEAR|BUY`` with a NaN price (hftbacktest then clears the whole side, not only up to a
price) and one ``DEPTH_SNAPSHOT|BUY`` row per bid, then the same for the asks. ``exch_ts`` is
``ts_event``, ``local_ts`` is ``ts_recv``. ``order_and_flag`` then sets ``EXCH``/``LOCAL`` exactly as
hftbacktest's ``correct_event_order`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

import numpy as np
from pydantic import ValidationError

from schemas import DepthUpdate, TradeTick
from services.common.book import OrderBook, price_key
from services.connector_feed.events import Depth, Trade, WireLevel
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EVENT_DTYPE,
    EXCH_EVENT,
    KIND_MASK,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    Rows,
)

#: One row as a tuple, in ``EVENT_DTYPE`` field order.
Row = tuple[int, int, int, float, float, int, int, float]
NAN = math.nan


class MessageRejected(ValueError):
    """A market-data message that is not a valid ``TradeTick`` / ``DepthUpdate``."""


def decode_message(is_trade: bool, payload: bytes) -> Trade | Depth:
    """One message from ``md.<SYMBOL>.trades`` (``is_trade``) or ``.depth`` as an internal event."""
    try:
        if is_trade:
            return Trade.from_contract(TradeTick.model_validate_json(payload))
        return Depth.from_contract(DepthUpdate.model_validate_json(payload))
    except ValidationError as error:
        raise MessageRejected(str(error.errors(include_url=False)[:1])) from None


def trade_row(trade: Trade, local_ts: int) -> Row:
    side = BUY_EVENT if trade.side == "buy" else SELL_EVENT
    return (
        TRADE_EVENT | side,
        trade.ts_event,
        local_ts,
        float(trade.price),
        float(trade.qty),
        0,
        trade.trade_id,
        0.0,
    )


def depth_rows(depth: Depth, local_ts: int) -> list[Row]:
    exch, uid = depth.ts_event, depth.last_update_id
    if not depth.is_snapshot:
        return [
            *(
                (DEPTH_EVENT | BUY_EVENT, exch, local_ts, float(p), float(q), 0, uid, 0.0)
                for p, q in depth.bids
            ),
            *(
                (DEPTH_EVENT | SELL_EVENT, exch, local_ts, float(p), float(q), 0, uid, 0.0)
                for p, q in depth.asks
            ),
        ]
    rows: list[Row] = []
    for side, levels in ((BUY_EVENT, depth.bids), (SELL_EVENT, depth.asks)):
        rows.append((DEPTH_CLEAR_EVENT | side, exch, local_ts, NAN, 0.0, 0, uid, 0.0))
        kind = DEPTH_SNAPSHOT_EVENT | side
        rows.extend(
            (kind, exch, local_ts, float(p), float(q), 0, uid, 0.0) for p, q in levels if float(q) > 0
        )
    return rows


def snapshot_rows(book: OrderBook) -> Rows:
    """The book as hftbacktest's ``create_last_snapshot`` writes it (an ``_eod.npz``)."""
    flags = EXCH_EVENT | LOCAL_EVENT | DEPTH_SNAPSHOT_EVENT
    rows = [(flags | BUY_EVENT, 0, 0, float(p), float(q), 0, 0, 0.0) for p, q in book.bids()]
    rows += [(flags | SELL_EVENT, 0, 0, float(p), float(q), 0, 0, 0.0) for p, q in book.asks()]
    return np.array(rows, dtype=EVENT_DTYPE)


def order_and_flag(rows: Rows) -> Rows:
    """``correct_event_order(rows, argsort(exch_ts), argsort(local_ts))`` (stable sorts) in Python.

    ``rows`` carry no EXCH/LOCAL bit. A row in order on both clocks gets ``EXCH|LOCAL``; one whose
    exchange time is out of order keeps ``LOCAL`` where it is and gets an ``EXCH``-only copy
    where the exchange clock puts it.
    """
    n = len(rows)
    by_exch = np.argsort(rows["exch_ts"], kind="stable").tolist()
    by_local = np.argsort(rows["local_ts"], kind="stable").tolist()
    exch, local = rows["exch_ts"].tolist(), rows["local_ts"].tolist()
    source: list[int] = []
    flags: list[int] = []
    e = lo = 0
    while e < n or lo < n:
        if e < n and lo < n:
            ex, lc = by_exch[e], by_local[lo]
            if exch[ex] == exch[lc] and local[ex] == local[lc]:
                source.append(ex)
                flags.append(EXCH_EVENT | LOCAL_EVENT)
                e, lo = e + 1, lo + 1
                continue
            if exch[ex] < exch[lc] or (exch[ex] == exch[lc] and local[ex] < local[lc]):
                source.append(ex)
                flags.append(EXCH_EVENT)
                e += 1
                continue
            source.append(lc)
            flags.append(LOCAL_EVENT)
            lo += 1
        elif lo < n:
            source.append(by_local[lo])
            flags.append(LOCAL_EVENT)
            lo += 1
        else:
            source.append(by_exch[e])
            flags.append(EXCH_EVENT)
            e += 1
    out = rows[np.array(source, dtype=np.int64)] if n else rows.copy()
    out["ev"] = out["ev"] | np.array(flags, dtype=np.uint64)
    return out


def local_view(rows: Rows) -> Rows:
    """Each event once, in arrival order, without its EXCH/LOCAL bits (to append to, re-flag)."""
    view: Rows = rows[(rows["ev"] & LOCAL_EVENT) != 0].copy()
    view["ev"] = view["ev"] & ~np.uint64(EXCH_EVENT | LOCAL_EVENT)
    return view


def float_to_wire(value: float) -> str:
    """The shortest decimal of a float, plain (what our decimal string was, for prices we wrote)."""
    return format(Decimal(repr(value)), "f")


def book_from_rows(chunks: Iterable[Rows], book: OrderBook | None = None) -> OrderBook:
    """Replay depth rows (ours: a clear is a whole side) onto ``book``: the book a restart resumes."""
    book = book or OrderBook()
    sides: dict[bool, dict[str, WireLevel]] = {
        True: {price_key(p): (p, q) for p, q in book.bids()},
        False: {price_key(p): (p, q) for p, q in book.asks()},
    }
    for rows in chunks:
        for ev, px, qty in zip(rows["ev"].tolist(), rows["px"].tolist(), rows["qty"].tolist(), strict=True):
            kind, is_bid = ev & KIND_MASK, bool(ev & BUY_EVENT)
            if not ev & (BUY_EVENT | SELL_EVENT):
                continue
            if kind == DEPTH_CLEAR_EVENT:
                sides[is_bid].clear()
            elif kind in (DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT) and px == px and px > 0:
                price = float_to_wire(px)
                if qty > 0:
                    sides[is_bid][price_key(price)] = (price, float_to_wire(qty))
                else:
                    sides[is_bid].pop(price_key(price), None)
    book.reset(list(sides[True].values()), list(sides[False].values()), book.last_update_id)
    return book
