"""Connector events (the seed's dict format, contracts, or in-house events) -> validated internal events.

Pure and synchronous: no I/O, no clock (the receipt time is passed in). Every value meets its rule
in ``schemas.rules`` before anything is built, so nothing the publisher is handed can fail to
encode. Every rejection names a stable ``reason`` (counted by the feed) and a bounded ``detail``
(logged as a sample). ``normalize`` is total: whatever a connector returns, it either gives an
event or raises ``EventRejected``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from schemas import DepthUpdate, Status, TradeTick, rules
from schemas.rules import RuleViolation
from schemas.types import decimal_to_wire
from services.connector_feed.events import Depth, Event, Trade, WireLevel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A connector event that cannot become a contract (the rule violation it broke, or the event's shape).
EventRejected = RuleViolation


def wire_decimal(value: object, field: str, *, positive: bool) -> str:
    """A price (``positive``) or quantity from a connector -> its exact plain-notation wire string."""
    return rules.decimal_value(value, field, positive=positive)


def timestamp_ns(value: object) -> int:
    """A datetime (naive = UTC) or an int of ms / µs / ns since the epoch, told apart by size."""
    if type(value) is int and 10**17 <= value <= rules.TIMESTAMP_MAX:
        return value  # nanoseconds: the fast path
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
        return rules.timestamp_ns(ns)
    if type(value) is not int:
        raise EventRejected("wrong_type", f"timestamp must be a datetime or int, got {type(value).__name__}")
    if 10**11 <= value < 10**14:
        return value * 1_000_000  # milliseconds
    if 10**14 <= value < 10**17:
        return value * 1_000  # microseconds
    raise EventRejected(
        "invalid_timestamp", f"timestamp {rules.preview(value)} is not ms, µs or ns since the epoch (int64)"
    )


def _require(event: dict[str, Any], key: str) -> Any:
    try:
        return event[key]
    except KeyError:
        raise EventRejected("missing_field", f"missing field {key!r}") from None


def _optional_id(event: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = _require(event, key) if required else event.get(key)
    return None if value is None and not required else rules.id_value(value, key)


def _received(event: dict[str, Any], ts_recv: int) -> int:
    """The connector's own receipt time (optional ``ts_recv``, int ns) if it stamped one, else ours."""
    own = event.get("ts_recv")
    return ts_recv if own is None else rules.timestamp_ns(own, "ts_recv")


def _levels(raw: object, side: str) -> list[WireLevel]:
    if not isinstance(raw, list | tuple):
        raise EventRejected("wrong_type", f"{side} must be a list of [price, qty], got {type(raw).__name__}")
    levels: list[WireLevel] = []
    decimal = rules.decimal_value
    for level in raw:
        if not isinstance(level, list | tuple) or len(level) != 2:
            raise EventRejected("invalid_level", f"{side} level {rules.preview(level)} is not [price, qty]")
        levels.append((decimal(level[0], "price", positive=True), decimal(level[1], "qty", positive=False)))
    return levels


class Normalizer:
    """Turns one connector's events into internal events, filling its defaults.

    ``symbols`` are the instrument ids this feed publishes: an event for any other symbol is
    refused (``unknown_symbol``) - a connector, or a venue behind it, cannot invent subjects.
    """

    def __init__(self, exchange: str, symbols: list[str]) -> None:
        self.exchange = exchange
        self.symbols = frozenset(symbols)
        self._default_symbol = symbols[0] if len(symbols) == 1 else None
        self._valid_keys: set[tuple[str, str]] = set()

    def normalize(self, event: object, ts_recv: int) -> Event:
        try:
            return self._normalize(event, ts_recv)
        except RuleViolation:
            raise
        except Exception as error:  # the per-event boundary: a connector's odd object is one bad event
            raise EventRejected("malformed", f"{type(error).__name__} on {rules.preview(event)}") from None

    def _normalize(self, event: object, ts_recv: int) -> Event:
        kind = type(event)
        if kind is Trade or kind is Depth:  # in-house connectors: their parser applied the rules
            internal = cast(Event, event)
            if internal.symbol not in self.symbols:
                raise self.unknown(internal.symbol)
            return internal
        if isinstance(event, dict):  # the seed's format
            what = event.get("type")
            if what == "trade":
                return self.trade(event, ts_recv)
            if what == "depth":
                return self.depth(event, ts_recv)
            raise EventRejected("unknown_type", f"unknown event type {rules.preview(what)}")
        if isinstance(event, TradeTick):
            self._exchange_and_symbol({"exchange": event.exchange, "symbol": event.symbol})
            return Trade.from_contract(event)
        if isinstance(event, DepthUpdate):
            self._exchange_and_symbol({"exchange": event.exchange, "symbol": event.symbol})
            return Depth.from_contract(event)
        raise EventRejected("not_a_dict", f"event must be a dict or contract, got {kind.__name__}")

    def check_status(self, status: Status) -> Status:
        """A connector's state change: only for a symbol this feed publishes."""
        if status.symbol not in self.symbols:
            raise self.unknown(status.symbol)
        return status

    def unknown(self, symbol: object) -> RuleViolation:
        return EventRejected(
            "unknown_symbol", f"symbol {rules.preview(symbol)} is not one this feed publishes"
        )

    def _exchange_and_symbol(self, event: dict[str, Any]) -> tuple[str, str]:
        exchange = event.get("exchange", self.exchange)
        symbol = event.get("symbol", self._default_symbol)
        if type(exchange) is str and type(symbol) is str and (exchange, symbol) in self._valid_keys:
            return exchange, symbol  # the hot path: a pair already checked once
        rules.exchange(exchange)
        if symbol is None:
            raise EventRejected(
                "missing_symbol", "symbol is required when the connector serves several symbols"
            )
        rules.symbol(symbol)
        if symbol not in self.symbols:
            raise self.unknown(symbol)
        if len(self._valid_keys) < 10_000:  # bounded: exchange ids are the connector's own
            self._valid_keys.add((exchange, symbol))
        return exchange, symbol

    def trade(self, event: dict[str, Any], ts_recv: int) -> Trade:
        exchange, symbol = self._exchange_and_symbol(event)
        try:
            price, qty, side, maker, trade_id, stamp = (
                event["price"],
                event["qty"],
                event["side"],
                event["is_buyer_maker"],
                event["id"],
                event["timestamp"],
            )
        except KeyError as missing:
            raise EventRejected("missing_field", f"missing field {missing.args[0]!r}") from None
        price = wire_decimal(price, "price", positive=True)
        qty = wire_decimal(qty, "qty", positive=True)
        if side != "buy" and side != "sell":
            raise EventRejected("invalid_side", f"side must be 'buy' or 'sell', got {rules.preview(side)}")
        if type(maker) is not bool:
            raise EventRejected("wrong_type", f"is_buyer_maker must be a bool, got {rules.preview(maker)}")
        if (side == "buy") is maker:
            raise EventRejected(
                "side_contradiction", f"side={side!r} contradicts is_buyer_maker={maker} (maker buyer = sell)"
            )
        return Trade(
            exchange,
            symbol,
            rules.id_value(trade_id, "id"),
            price,
            qty,
            side,
            maker,
            timestamp_ns(stamp),
            _received(event, ts_recv),
        )

    def depth(self, event: dict[str, Any], ts_recv: int) -> Depth:
        exchange, symbol = self._exchange_and_symbol(event)
        bids = _levels(_require(event, "bids"), "bids")
        asks = _levels(_require(event, "asks"), "asks")
        is_snapshot = event.get("is_snapshot", True)
        if type(is_snapshot) is not bool:
            raise EventRejected("wrong_type", f"is_snapshot must be a bool, got {rules.preview(is_snapshot)}")
        last_id = rules.id_value(_require(event, "last_update_id"), "last_update_id")
        first_id = _optional_id(event, "first_update_id", required=not is_snapshot)
        prev_id = _optional_id(event, "prev_last_update_id", required=False)
        if first_id is not None and first_id > last_id:
            raise EventRejected(
                "invalid_update_ids", f"first_update_id {first_id} > last_update_id {last_id}"
            )
        if is_snapshot and bids and asks:
            best_bid = max(Decimal(p) for p, _ in bids)
            best_ask = min(Decimal(p) for p, _ in asks)
            if best_bid >= best_ask:
                raise EventRejected(
                    "crossed_book",
                    f"snapshot best bid {decimal_to_wire(best_bid)} >= best ask {decimal_to_wire(best_ask)}",
                )
        return Depth(
            exchange,
            symbol,
            bids,
            asks,
            is_snapshot,
            first_id,
            last_id,
            prev_id,
            timestamp_ns(_require(event, "timestamp")),
            _received(event, ts_recv),
        )
