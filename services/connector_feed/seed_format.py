"""The feed's internal events -> the seed's ``next_event`` dicts (``normalize`` reads them back).

Pure and lossless: ``Normalizer.normalize(seed_event(e), t)`` is ``e`` again, field for field, so a
connector that hands its events over in the seed's format publishes exactly what it parsed.
Prices and quantities stay the exact decimal strings the parser made; ``timestamp`` is the
venue's time in integer nanoseconds (the seed's int timestamps may be ms, µs or ns: told apart by
size), and ``ts_recv`` - our receipt time of the frame, an optional key of the format - keeps the
latency of the event honest however long it waited to be asked for.
"""

from __future__ import annotations

from typing import Any

from services.connector_feed.events import Depth, Trade


def trade_event(trade: Trade) -> dict[str, Any]:
    """``{"type": "trade", "timestamp", "price", "qty", "side", "is_buyer_maker", "id", ...}``."""
    return {
        "type": "trade",
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "timestamp": trade.ts_event,
        "ts_recv": trade.ts_recv,
        "price": trade.price,
        "qty": trade.qty,
        "side": trade.side,
        "is_buyer_maker": trade.is_buyer_maker,
        "id": trade.trade_id,
    }


def depth_event(depth: Depth) -> dict[str, Any]:
    """``{"type": "depth", "timestamp", "bids", "asks", "last_update_id", ...}`` with the update ids
    that chain it (``first_update_id``, ``prev_last_update_id``) and ``is_snapshot``."""
    return {
        "type": "depth",
        "exchange": depth.exchange,
        "symbol": depth.symbol,
        "timestamp": depth.ts_event,
        "ts_recv": depth.ts_recv,
        "bids": depth.bids,
        "asks": depth.asks,
        "is_snapshot": depth.is_snapshot,
        "first_update_id": depth.first_update_id,
        "last_update_id": depth.last_update_id,
        "prev_last_update_id": depth.prev_last_update_id,
    }


def seed_event(event: Trade | Depth) -> dict[str, Any]:
    return trade_event(event) if type(event) is Trade else depth_event(event)  # type: ignore[arg-type]
