"""Pure parsing of Binance depth: diff events, partial books, REST snapshots and price levels.

Part of the parser (``parse``), kept apart for size: no I/O, no clock, and every failure is a
``MalformedFrame`` (``schemas.rules.RuleViolation``) with a stable reason. The frame's symbol is
resolved by the caller's ``symbol_of`` (its list of subscribed symbols), at the same point of the
checks as ever, so a frame with several faults still reports the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas import rules
from schemas.rules import RuleViolation
from services.connector_feed.events import WireLevel

MS = 1_000_000
#: The largest venue time in ms that is still an int64 of ns.
MAX_MS = rules.TIMESTAMP_MAX // MS

#: A frame that is not what Binance documents (a rule violation: ``reason`` and bounded ``detail``).
MalformedFrame = RuleViolation
#: A venue symbol (any JSON value) -> our instrument id, or ``MalformedFrame``.
SymbolOf = Callable[[object], str]


@dataclass(slots=True)
class DepthDiff:
    symbol: str  # our instrument id (BTCUSDT / BTCUSDT-PERP)
    first_update_id: int  # U
    last_update_id: int  # u
    prev_last_update_id: int | None  # pu (futures only)
    bids: Sequence[WireLevel]
    asks: Sequence[WireLevel]
    ts_event: int
    ts_recv: int


@dataclass(slots=True)
class Snapshot:
    """A REST depth snapshot; ``raw`` keeps the body as received (for recordings)."""

    last_update_id: int
    bids: Sequence[WireLevel]
    asks: Sequence[WireLevel]
    raw: str = ""


@dataclass(slots=True)
class PartialBook:
    symbol: str
    last_update_id: int
    bids: Sequence[WireLevel]
    asks: Sequence[WireLevel]
    ts_event: int
    ts_recv: int


def parse_rest_snapshot(body: str | bytes) -> Snapshot:
    """``{"lastUpdateId": ..., "bids": [...], "asks": [...]}`` (futures add ``E``, ``T``)."""
    try:
        data = orjson.loads(body)
        last = data.get("lastUpdateId") if type(data) is dict else None
        if type(last) is not int or not 0 <= last <= rules.ID_MAX:
            raise MalformedFrame("bad_snapshot", f"no valid lastUpdateId in {rules.preview(body)}")
        raw = body if isinstance(body, str) else body.decode()
        return Snapshot(last, parse_levels(data.get("bids")), parse_levels(data.get("asks")), raw)
    except RuleViolation:
        raise
    except Exception as error:  # not JSON, not UTF-8 ...: one bad body, never a crash
        raise MalformedFrame("bad_snapshot", f"{type(error).__name__}: {rules.preview(body)}") from None


def parse_diff(data: dict[str, Any], ts_recv: int, symbol_of: SymbolOf) -> DepthDiff:
    """A ``depthUpdate`` (spot ``e,E,s,U,u,b,a``; USD-M adds ``T``, ``pu``); ``KeyError`` if a field
    is missing (the caller names it)."""
    first, last, prev = data["U"], data["u"], data.get("pu")
    if type(first) is not int or type(last) is not int or not 0 <= first <= last <= rules.ID_MAX:
        raise MalformedFrame("bad_update_ids", f"U={rules.preview(first)} u={rules.preview(last)}")
    if prev is not None and (type(prev) is not int or not 0 <= prev <= rules.ID_MAX):
        raise MalformedFrame("bad_update_ids", f"pu={rules.preview(prev)}")
    ts = data.get("T") or data["E"]
    return DepthDiff(
        symbol_of(data["s"]),
        first,
        last,
        prev,
        parse_levels(data["b"]),
        parse_levels(data["a"]),
        ms_to_ns(ts),
        ts_recv,
    )


def parse_futures_partial(data: dict[str, Any], ts_recv: int, symbol_of: SymbolOf) -> PartialBook:
    """USD-M ``<s>@depth<N>@...``: a whole ``depthUpdate`` of the top N levels."""
    return PartialBook(
        symbol_of(data["s"]),
        update_id(data["u"]),
        parse_levels(data["b"]),
        parse_levels(data["a"]),
        ms_to_ns(data.get("T") or data["E"]),
        ts_recv,
    )


def parse_spot_partial(
    data: dict[str, Any], stream: object, ts_recv: int, symbol_of: SymbolOf
) -> PartialBook:
    """Spot ``<s>@depth<N>@...``: no symbol, no time in the payload (the stream names the symbol)."""
    if type(stream) is not str or "@" not in stream:
        raise MalformedFrame("bad_envelope", "a partial book needs its stream name for the symbol")
    return PartialBook(
        symbol_of(stream.split("@")[0].upper()),
        update_id(data["lastUpdateId"]),
        parse_levels(data["bids"]),
        parse_levels(data["asks"]),
        ts_recv,
        ts_recv,
    )


def is_partial_stream(stream: object) -> bool:
    """``<s>@depth5@100ms`` (a partial book) rather than ``<s>@depth@100ms`` (diffs)."""
    if type(stream) is not str or "@" not in stream:
        return False
    name = stream.split("@")[1]
    return name.startswith("depth") and name != "depth"


def ms_to_ns(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_MS:
        raise MalformedFrame("bad_time", f"time {rules.preview(value)} (ms, within int64 ns)")
    return value * MS


def update_id(value: object) -> int:
    if type(value) is not int or not 0 <= value <= rules.ID_MAX:
        raise MalformedFrame("bad_update_ids", f"id {rules.preview(value)}")
    return value


def parse_levels(raw: object) -> list[WireLevel]:
    """``[["price", "qty"], ...]`` as Binance sent them (quantity 0 removes a level); the rule of
    ``schemas.rules.levels``, reported as ``bad_levels``."""
    try:
        return rules.levels(raw)
    except RuleViolation as error:
        raise MalformedFrame("bad_levels", error.detail) from None
