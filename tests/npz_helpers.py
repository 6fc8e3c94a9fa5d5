"""Contracts as the feed publishes them, and hftbacktest files read back, for the record-npz tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas import DepthUpdate, TradeTick
from services.connector_feed.hftbacktest.format import Rows, load_rows

T0 = 1_770_000_000_000_000_000  # 2026-02-02 02:40 UTC


def trade(
    symbol: str, trade_id: int, price: str, qty: str, side: str, ts: int, exchange: str = "stub"
) -> bytes:
    return TradeTick(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        qty=qty,
        side=side,
        is_buyer_maker=side == "sell",
        ts_event=ts - 1000,
        ts_recv=ts,
    ).to_json()


def depth(
    symbol: str,
    update_id: int,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    ts: int,
    snapshot: bool = False,
    exchange: str = "stub",
) -> bytes:
    return DepthUpdate(
        exchange=exchange,
        symbol=symbol,
        bids=bids,
        asks=asks,
        is_snapshot=snapshot,
        first_update_id=None if snapshot else update_id,
        last_update_id=update_id,
        ts_event=ts - 2000,
        ts_recv=ts,
    ).to_json()


def day_file(root: Path, symbol: str, day: str = "20260202", exchange: str = "stub") -> Rows:
    return load_rows(root / exchange / f"{symbol}_{day}.npz")


def eod_file(root: Path, symbol: str, day: str = "20260202", exchange: str = "stub") -> Rows:
    return load_rows(root / exchange / f"{symbol}_{day}_eod.npz")


def as_tuples(rows: Rows) -> list[tuple[int, int, int, float, float, int]]:
    return [
        (int(r["ev"]), int(r["exch_ts"]), int(r["local_ts"]), float(r["px"]), float(r["qty"]), int(r["ival"]))
        for r in rows
    ]


def nan_safe(rows: list[tuple[int, int, int, float, float, int]]) -> list[tuple[object, ...]]:
    return [tuple("nan" if isinstance(v, float) and np.isnan(v) else v for v in row) for row in rows]
