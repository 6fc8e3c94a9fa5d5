"""Message contracts. The only place message models are defined.

Models are frozen, ignore unknown fields (tolerant reader) and carry ``schema_version``; they
change additively. ``ts_event`` is the venue's time, ``ts_recv`` ours, both integer nanoseconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import (
    Count,
    ExchangeId,
    FeedRun,
    Flag,
    Id,
    Price,
    Qty,
    SchemaVersion,
    Seq,
    Side,
    SignedDecimal,
    Symbol,
    TimestampNs,
)

SCHEMA_VERSION: Literal[1] = 1

#: A book level on the wire: ``[price, qty]``; qty 0 removes the level.
Level = tuple[Price, Qty]


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_serialization_defaults_required=True)

    def to_json(self) -> bytes:
        """The exact bytes published on NATS."""
        return self.model_dump_json().encode()


#: How a subscriber knows it has every message (the rule of ``seq`` and ``feed_run``).
SEQUENCE_RULE = """
Every message the feed publishes on ``md.<SYMBOL>.trades`` and ``md.<SYMBOL>.depth`` carries
``seq`` and ``feed_run``: ``seq`` is 1 for the first message of that (symbol, subject) in a feed
run and +1 for each next one; ``feed_run`` is unique to each run of a feed process. A subscriber
that sees ``seq`` jump has lost messages; one that sees a new ``feed_run`` is reading a restarted
feed (``seq`` starts over at 1). A depth snapshot has a ``seq`` like any other depth message; the
book a feed returns on ``md.<SYMBOL>.book`` carries the ``seq`` of the last depth message
already reflected in it.
"""


class TradeTick(Contract):
    """One trade. ``side`` is the aggressor (taker) side: buyer is maker means a sell.

    ``seq`` / ``feed_run``: see ``SEQUENCE_RULE``.
    """

    exchange: ExchangeId
    symbol: Symbol
    trade_id: Id
    price: Price
    qty: Qty
    side: Side
    is_buyer_maker: Flag
    ts_event: TimestampNs
    ts_recv: TimestampNs
    seq: Seq | None = Field(
        default=None,
        description="this message's place in the feed run's stream of its subject: 1, 2, 3 ... "
        "(a gap means a lost message)",
    )
    feed_run: FeedRun | None = Field(
        default=None, description="the id of the feed process run that published it (new at every start)"
    )
    schema_version: SchemaVersion = SCHEMA_VERSION

    @model_validator(mode="after")
    def _side_matches_maker(self) -> TradeTick:
        if (self.side == "buy") == self.is_buyer_maker:
            raise ValueError(
                f"side={self.side!r} contradicts is_buyer_maker={self.is_buyer_maker} "
                "(buyer is maker means the aggressor sold)"
            )
        if self.qty <= 0:
            raise ValueError("trade qty must be > 0")
        return self


class DepthUpdate(Contract):
    """Order-book depth: a whole book (``is_snapshot``) or a delta of absolute level quantities.

    Deltas carry the venue's update ids so a subscriber can chain them and detect a gap:
    ``first_update_id``..``last_update_id`` (and ``prev_last_update_id`` where the venue has one).
    ``seq`` / ``feed_run`` number every depth message of a feed run: see ``SEQUENCE_RULE``.
    """

    exchange: ExchangeId
    symbol: Symbol
    bids: list[Level]
    asks: list[Level]
    is_snapshot: Flag
    first_update_id: Id | None = None
    last_update_id: Id
    prev_last_update_id: Id | None = None
    ts_event: TimestampNs
    ts_recv: TimestampNs
    seq: Seq | None = Field(
        default=None,
        description="this message's place in the feed run's stream of its subject: 1, 2, 3 ... "
        "(a gap means a lost message)",
    )
    feed_run: FeedRun | None = Field(
        default=None, description="the id of the feed process run that published it (new at every start)"
    )
    schema_version: SchemaVersion = SCHEMA_VERSION

    @model_validator(mode="after")
    def _ids_in_order(self) -> DepthUpdate:
        if self.first_update_id is not None and self.first_update_id > self.last_update_id:
            raise ValueError("first_update_id must be <= last_update_id")
        if not self.is_snapshot and self.first_update_id is None:
            raise ValueError("a delta needs first_update_id")
        return self


class Signal(Contract):
    """A strategy's view on a symbol, published on ``signals.<strategy>.<SYMBOL>``."""

    strategy: Symbol
    symbol: Symbol
    side: Literal["buy", "sell", "flat"]
    strength: SignedDecimal
    reason: str = Field(max_length=2000)
    ts_event: TimestampNs
    ts: TimestampNs
    schema_version: SchemaVersion = SCHEMA_VERSION


class Status(Contract):
    """A change of a symbol's market-data state, published on ``md.<SYMBOL>.status``.

    ``live``: data flows and books are in sync. ``resyncing``: a book is being rebuilt (discard
    depth until the next snapshot). ``stale``: a subscribed stream went silent past its threshold.
    ``reconnecting``: the venue connection dropped and is being re-established. ``down``: the feed
    gave up or cannot reach the venue.
    """

    exchange: ExchangeId
    symbol: Symbol
    stream: Literal["trades", "depth", "all"]
    state: Literal["live", "resyncing", "stale", "reconnecting", "down"]
    reason: str = Field(max_length=2000)
    ts: TimestampNs
    schema_version: SchemaVersion = SCHEMA_VERSION


class FeedStatus(Contract):
    """The current state of every instrument a feed publishes: the reply on ``md.status``.

    For a subscriber that joins late (``md.<SYMBOL>.status`` carries changes only): subscribe to
    the status subjects first, then ask; keep, per symbol, the ``Status`` with the greatest ``ts``.
    Each ``Status`` here is the state as of ``ts`` (the time of the reply), its ``reason`` the one
    of the change that led to it. Each feed answers with its own instruments.
    """

    exchange: ExchangeId
    feed_run: FeedRun = Field(description="the id of the feed process run that answered")
    statuses: list[Status] = Field(description="one per instrument the feed publishes, by symbol")
    ts: TimestampNs
    schema_version: SchemaVersion = SCHEMA_VERSION


class ContextSnapshot(Contract):
    """Rolling market context of one symbol, the reply on ``context.<SYMBOL>.snapshot``.

    Rates count trades received in the last minute (per_second = per_minute / 60); the VWAP
    covers trades whose event time is within ``vwap_window_s`` of the newest one. The book
    fields come from md.<SYMBOL>.depth; ``book_synced`` is false until a snapshot arrives and
    after a detected gap, until the next snapshot.
    """

    symbol: Symbol
    exchange: ExchangeId | None
    last_price: Price | None
    last_trade_ts: TimestampNs | None
    trade_count: Count = Field(description="trades seen since start")
    trades_per_minute: Count
    trades_per_second: float = Field(ge=0)
    vwap: Price | None
    vwap_window_s: float
    vwap_trades: Count
    best_bid: Price | None
    best_ask: Price | None
    spread: SignedDecimal | None
    book_synced: Flag
    book_update_id: Id | None
    bid_levels: Count
    ask_levels: Count
    book_gaps: Count = Field(description="gaps detected in the depth update-id chain")
    recent_trades: list[TradeTick] = Field(description="the last N trades, oldest first")
    ts: TimestampNs
    schema_version: SchemaVersion = SCHEMA_VERSION


def json_schemas() -> dict[str, dict[str, Any]]:
    """The wire JSON Schema of every contract, keyed by file stem (``trade_tick`` ...)."""
    return {stem: model.model_json_schema(mode="serialization") for stem, model in CONTRACTS.items()}


CONTRACTS: dict[str, type[Contract]] = {
    "trade_tick": TradeTick,
    "depth_update": DepthUpdate,
    "signal": Signal,
    "context_snapshot": ContextSnapshot,
    "status": Status,
    "feed_status": FeedStatus,
}
