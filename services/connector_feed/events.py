"""The feed's internal event types and their wire encoding.

The hot path carries prices and quantities as canonical wire strings (already validated by the
parser) and encodes straight to JSON with orjson; the bytes are exactly what the pydantic
contracts (``TradeTick`` / ``DepthUpdate``) serialise to - ``tests/test_wire_contract.py`` proves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from opentelemetry.context import Context

from schemas import SCHEMA_VERSION, DepthUpdate, TradeTick
from schemas.types import decimal_to_wire

WireLevel = Sequence[str]  # (price, qty): schemas.rules.Level


@dataclass(slots=True)
class Trade:
    exchange: str
    symbol: str
    trade_id: int
    price: str
    qty: str
    side: str
    is_buyer_maker: bool
    ts_event: int
    ts_recv: int
    #: Set by the feed when it accepts the event (``schemas.models.SEQUENCE_RULE``).
    seq: int | None = None
    feed_run: str | None = None
    #: Trace context of a sampled event (its receive span); None for the unsampled majority.
    trace: Context | None = None
    #: Traced or a lag sample: published through ``Publisher.publish_sampled`` (span, publish time).
    sampled: bool = False

    def wire(self) -> bytes:
        return orjson.dumps(
            {
                "exchange": self.exchange,
                "symbol": self.symbol,
                "trade_id": self.trade_id,
                "price": self.price,
                "qty": self.qty,
                "side": self.side,
                "is_buyer_maker": self.is_buyer_maker,
                "ts_event": self.ts_event,
                "ts_recv": self.ts_recv,
                "seq": self.seq,
                "feed_run": self.feed_run,
                "schema_version": SCHEMA_VERSION,
            }
        )

    def to_contract(self) -> TradeTick:
        return TradeTick.model_validate_json(self.wire())

    @classmethod
    def from_contract(cls, tick: TradeTick) -> Trade:
        return cls(
            tick.exchange,
            tick.symbol,
            tick.trade_id,
            decimal_to_wire(tick.price),
            decimal_to_wire(tick.qty),
            tick.side,
            tick.is_buyer_maker,
            tick.ts_event,
            tick.ts_recv,
            tick.seq,
            tick.feed_run,
        )


@dataclass(slots=True)
class Depth:
    exchange: str
    symbol: str
    bids: Sequence[WireLevel]
    asks: Sequence[WireLevel]
    is_snapshot: bool
    first_update_id: int | None
    last_update_id: int
    prev_last_update_id: int | None
    ts_event: int
    ts_recv: int
    seq: int | None = None
    feed_run: str | None = None
    trace: Context | None = None
    sampled: bool = False

    def wire(self) -> bytes:
        return orjson.dumps(
            {
                "exchange": self.exchange,
                "symbol": self.symbol,
                "bids": self.bids,
                "asks": self.asks,
                "is_snapshot": self.is_snapshot,
                "first_update_id": self.first_update_id,
                "last_update_id": self.last_update_id,
                "prev_last_update_id": self.prev_last_update_id,
                "ts_event": self.ts_event,
                "ts_recv": self.ts_recv,
                "seq": self.seq,
                "feed_run": self.feed_run,
                "schema_version": SCHEMA_VERSION,
            }
        )

    @classmethod
    def whole_book(
        cls,
        exchange: str,
        symbol: str,
        bids: Sequence[WireLevel],
        asks: Sequence[WireLevel],
        last_update_id: int,
        ts_event: int,
        ts_recv: int,
        seq: int | None = None,
        feed_run: str | None = None,
    ) -> Depth:
        """A book as it stands, as a snapshot (no first/previous update ids)."""
        return cls(
            exchange, symbol, bids, asks, True, None, last_update_id, None, ts_event, ts_recv, seq, feed_run
        )

    def to_contract(self) -> DepthUpdate:
        return DepthUpdate.model_validate_json(self.wire())

    @classmethod
    def from_contract(cls, update: DepthUpdate) -> Depth:
        return cls(
            update.exchange,
            update.symbol,
            [(decimal_to_wire(p), decimal_to_wire(q)) for p, q in update.bids],
            [(decimal_to_wire(p), decimal_to_wire(q)) for p, q in update.asks],
            update.is_snapshot,
            update.first_update_id,
            update.last_update_id,
            update.prev_last_update_id,
            update.ts_event,
            update.ts_recv,
            update.seq,
            update.feed_run,
        )


Event = Trade | Depth
