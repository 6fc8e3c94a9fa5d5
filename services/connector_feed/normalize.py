"""Connector events (the seed's dict format) -> validated internal events.

Pure and synchronous: no I/O, no clock (the receipt time is passed in). Every rejection names a
stable ``reason`` (counted by the feed) and a human ``detail`` (logged).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas import DepthUpdate, TradeTick
from schemas.subjects import InvalidSubjectToken, check_token
from services.connector_feed.events import Depth, Event, Trade, WireLevel

_PLAIN_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
_EXCHANGE = re.compile(r"[a-z0-9_]{1,32}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventRejected(ValueError):
    """A connector event that cannot become a contract. ``reason`` is a stable counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def wire_decimal(value: object, field: str, *, positive: bool) -> str:
    """Validate a price (``positive``) or quantity and return its exact plain-notation string.

    Strings keep the venue's digits; floats go through their shortest repr (never
    ``Decimal(float)``); NaN, infinities, negatives (and zero prices) are rejected.
    """
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if _PLAIN_DECIMAL.fullmatch(text):
            if positive and not text.strip("0."):
                raise EventRejected(f"non_positive_{field}", f"{field} must be > 0, got {text!r}")
            return text
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise EventRejected(f"invalid_{field}", f"{field} {text!r} is not a decimal number") from None
    elif kind is float:
        number = Decimal(repr(value))  # repr: the shortest string that round-trips
    elif kind is int:
        number = Decimal(value)  # type: ignore[arg-type]
    elif kind is Decimal:
        number = value  # type: ignore[assignment]
    else:
        raise EventRejected("wrong_type", f"{field} must be a number or decimal string, got {kind.__name__}")
    if number.is_nan():
        raise EventRejected(f"nan_{field}", f"{field} is NaN")
    if number.is_infinite():
        raise EventRejected(f"infinite_{field}", f"{field} is infinite")
    if number < 0:
        raise EventRejected(f"negative_{field}", f"{field} must not be negative, got {number}")
    if positive and number == 0:
        raise EventRejected(f"non_positive_{field}", f"{field} must be > 0, got {number}")
    return format(abs(number), "f")  # abs(): -0 is 0


def timestamp_ns(value: object) -> int:
    """A datetime (naive = UTC) or an int of ms / µs / ns since the epoch, told apart by size."""
    if type(value) is int and 10**17 <= value < 10**20:
        return value  # nanoseconds: the fast path
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if type(value) is not int:
        raise EventRejected("wrong_type", f"timestamp must be a datetime or int, got {type(value).__name__}")
    if 10**11 <= value < 10**14:
        return value * 1_000_000  # milliseconds
    if 10**14 <= value < 10**17:
        return value * 1_000  # microseconds
    if 10**17 <= value < 10**20:
        return value  # nanoseconds
    raise EventRejected("invalid_timestamp", f"timestamp {value} is not ms, µs or ns since the epoch")


def _require(event: dict[str, Any], key: str) -> Any:
    try:
        return event[key]
    except KeyError:
        raise EventRejected("missing_field", f"missing field {key!r}") from None


def _int_field(event: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = _require(event, key) if required else event.get(key)
    if value is None and not required:
        return None
    if type(value) is not int or value < 0:
        raise EventRejected("wrong_type", f"{key} must be a non-negative int, got {value!r}")
    return value


def _plain_levels(raw: list[Any] | tuple[Any, ...]) -> list[WireLevel] | None:
    """The fast path: every level a pair of plain decimal strings with a non-zero price."""
    match = _PLAIN_DECIMAL.fullmatch
    try:
        for price, qty in raw:
            if not (
                type(price) is str and type(qty) is str and match(price) and match(qty) and price.strip("0.")
            ):
                return None
    except (TypeError, ValueError):  # not pairs: let the slow path say what is wrong
        return None
    return [(p, q) for p, q in raw]


def _levels(raw: object, side: str) -> list[WireLevel]:
    if not isinstance(raw, list | tuple):
        raise EventRejected("wrong_type", f"{side} must be a list of [price, qty], got {type(raw).__name__}")
    fast = _plain_levels(raw)
    if fast is not None:
        return fast
    levels: list[WireLevel] = []
    for level in raw:
        if not isinstance(level, list | tuple) or len(level) != 2:
            raise EventRejected("invalid_level", f"{side} level {level!r} is not [price, qty]")
        levels.append(
            (wire_decimal(level[0], "price", positive=True), wire_decimal(level[1], "qty", positive=False))
        )
    return levels


class Normalizer:
    """Turns one connector's events into internal events, filling its defaults."""

    def __init__(self, exchange: str, symbols: list[str]) -> None:
        self.exchange = exchange
        self._default_symbol = symbols[0] if len(symbols) == 1 else None
        self._valid_keys: set[tuple[str, str]] = set()

    def normalize(self, event: object, ts_recv: int) -> Event:
        if type(event) is dict or isinstance(event, dict):  # the seed's format (the exact type first: fast)
            kind = event.get("type")
            if kind == "trade":
                return self.trade(event, ts_recv)
            if kind == "depth":
                return self.depth(event, ts_recv)
            raise EventRejected("unknown_type", f"unknown event type {kind!r}")
        if type(event) is Trade or type(event) is Depth:  # in-house connectors: already validated
            return event
        if isinstance(event, TradeTick):
            return Trade.from_contract(event)
        if isinstance(event, DepthUpdate):
            return Depth.from_contract(event)
        raise EventRejected("not_a_dict", f"event must be a dict or contract, got {type(event).__name__}")

    def _exchange_and_symbol(self, event: dict[str, Any]) -> tuple[str, str]:
        key = (event.get("exchange", self.exchange), event.get("symbol", self._default_symbol))
        if key in self._valid_keys:  # the hot path: a pair already checked once
            return key
        exchange, symbol = key
        if not isinstance(exchange, str) or not _EXCHANGE.fullmatch(exchange):
            raise EventRejected("invalid_exchange", f"exchange {exchange!r} is not a lower-case id")
        if symbol is None:
            raise EventRejected(
                "missing_symbol", "symbol is required when the connector serves several symbols"
            )
        if not isinstance(symbol, str):
            raise EventRejected("wrong_type", f"symbol must be a str, got {type(symbol).__name__}")
        try:
            check_token(symbol, "symbol")
        except InvalidSubjectToken as error:
            raise EventRejected("invalid_symbol", str(error)) from None
        if len(self._valid_keys) < 10_000:  # bounded: a connector inventing symbols cannot grow it
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
            raise EventRejected("invalid_side", f"side must be 'buy' or 'sell', got {side!r}")
        if type(maker) is not bool:
            raise EventRejected("wrong_type", f"is_buyer_maker must be a bool, got {maker!r}")
        if (side == "buy") is maker:
            raise EventRejected(
                "side_contradiction", f"side={side!r} contradicts is_buyer_maker={maker} (maker buyer = sell)"
            )
        if type(trade_id) is not int or trade_id < 0:
            raise EventRejected("wrong_type", f"id must be a non-negative int, got {trade_id!r}")
        return Trade(exchange, symbol, trade_id, price, qty, side, maker, timestamp_ns(stamp), ts_recv)

    def depth(self, event: dict[str, Any], ts_recv: int) -> Depth:
        exchange, symbol = self._exchange_and_symbol(event)
        bids = _levels(_require(event, "bids"), "bids")
        asks = _levels(_require(event, "asks"), "asks")
        is_snapshot = event.get("is_snapshot", True)
        if type(is_snapshot) is not bool:
            raise EventRejected("wrong_type", f"is_snapshot must be a bool, got {is_snapshot!r}")
        last_id = _int_field(event, "last_update_id")
        assert last_id is not None
        first_id = _int_field(event, "first_update_id", required=not is_snapshot)
        prev_id = _int_field(event, "prev_last_update_id", required=False)
        if first_id is not None and first_id > last_id:
            raise EventRejected(
                "invalid_update_ids", f"first_update_id {first_id} > last_update_id {last_id}"
            )
        if is_snapshot and bids and asks:
            best_bid = max(Decimal(p) for p, _ in bids)
            best_ask = min(Decimal(p) for p, _ in asks)
            if best_bid >= best_ask:
                raise EventRejected("crossed_book", f"snapshot best bid {best_bid} >= best ask {best_ask}")
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
            ts_recv,
        )
