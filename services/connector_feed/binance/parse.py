"""Pure parsing of Binance market-data frames: raw text + receipt time -> our events.

No I/O, no clock. One frame is one of: a trade (``Trade``, exact decimal strings as Binance sent
them), a depth diff (``DepthDiff``, for the local order book), a partial book (``PartialBook``), a
control frame (``Control``: subscription replies, errors, ``serverShutdown``), or malformed
(``MalformedFrame`` with a stable reason, counted by the connector).

``parse`` is total: every value meets its rule in ``schemas.rules`` (plain bounded decimals,
int64 ns times, uint64 ids, token symbols) and whatever else a frame holds - any JSON type in any
field, nesting 1,000 deep, a 10 kB number - ends as ``MalformedFrame``, never another exception.
A parser told its symbols refuses frames of any other symbol (``unknown_symbol``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from schemas import rules
from schemas.rules import RuleViolation
from services.connector_feed.events import Trade, WireLevel

#: A trade's price and quantity in one match: both plain decimals > 0 (lengths checked beside it).
_PRICE_AND_QTY = re.compile(rules.POSITIVE_DECIMAL_TEXT + "," + rules.POSITIVE_DECIMAL_TEXT)
_MAX_DECIMAL = rules.DECIMAL_MAX_LENGTH
MS = 1_000_000
#: The largest venue time in ms that is still an int64 of ns.
MAX_MS = rules.TIMESTAMP_MAX // MS
#: USD-M @trade print types other than MARKET (a bounded label set; anything else is "other").
_PRINT_TYPES = frozenset({"INSURANCE_FUND", "ADL", "NA"})
#: Venue symbols a parser without a configured list remembers (a hostile stream cannot grow it).
_MAX_KNOWN_SYMBOLS = 10_000

Market = Literal["spot", "usdm"]
EXCHANGE = {"spot": "binance", "usdm": "binance_usdm"}


#: A frame that is not what Binance documents (a rule violation: ``reason`` and bounded ``detail``).
MalformedFrame = RuleViolation


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


@dataclass(slots=True)
class PartialBook:
    symbol: str
    last_update_id: int
    bids: Sequence[WireLevel]
    asks: Sequence[WireLevel]
    ts_event: int
    ts_recv: int


@dataclass(slots=True)
class Unpublished:
    """A valid frame that is not published: a USD-M ``@trade`` print that is no market trade (``X``:
    INSURANCE_FUND, ADL, NA ...), or a trade of the stream that is only recorded (USD-M ``@trade``
    beside the published ``@aggTrade``). ``kind`` is a bounded label."""

    symbol: str
    kind: str


@dataclass(slots=True)
class Control:
    kind: Literal["subscription_reply", "error", "server_shutdown"]
    detail: dict[str, Any]


Parsed = Trade | DepthDiff | PartialBook | Control | Unpublished


def instrument_id(venue_symbol: str, market: Market) -> str:
    """Our instrument id, one subject token: ``BTCUSDT`` (spot), ``BTCUSDT-PERP`` (a USD-M
    perpetual); a USD-M delivery contract keeps its own id (``BTCUSDT_250627``)."""
    symbol = venue_symbol.upper()
    return symbol + "-PERP" if market == "usdm" and "_" not in symbol else symbol


class BinanceParser:
    """Parses frames of one market into our instrument ids (``BTCUSDT``, ``BTCUSDT-PERP``).

    ``venue_symbols`` (Binance's upper-case symbols) are the only ones accepted when given;
    without them (replaying a recording) any symbol that meets the symbol rule is.
    """

    def __init__(
        self, market: Market, trade_stream: str | None = None, venue_symbols: Iterable[str] | None = None
    ) -> None:
        self.market = market
        # Which trade event this connection carries is known up front: check it first.
        self._trade_event = trade_stream or ("trade" if market == "spot" else "aggTrade")
        self._trade_id_key = "t" if self._trade_event == "trade" else "a"
        # USD-M @trade also carries insurance-fund and ADL prints: only X == MARKET is a trade.
        self._filter_prints = market == "usdm" and self._trade_event == "trade"
        self.exchange = EXCHANGE[market]
        self._closed = venue_symbols is not None
        self._ids: dict[str, str] = {s: instrument_id(s, market) for s in venue_symbols or ()}

    def _symbol(self, venue_symbol: object) -> str:
        if type(venue_symbol) is not str:
            raise MalformedFrame("bad_symbol", f"symbol {rules.preview(venue_symbol)} is not a string")
        known = self._ids.get(venue_symbol)
        if known is not None:
            return known
        if self._closed:
            raise MalformedFrame(
                "unknown_symbol", f"a symbol this feed did not subscribe: {rules.preview(venue_symbol)}"
            )
        try:
            known = instrument_id(rules.symbol(venue_symbol), self.market)
            rules.symbol(known)  # the id too must be one subject token
        except RuleViolation as error:
            raise MalformedFrame("bad_symbol", error.detail) from None
        if len(self._ids) < _MAX_KNOWN_SYMBOLS:
            self._ids[venue_symbol] = known
        return known

    def parse(self, frame: str | bytes | memoryview, ts_recv: int) -> Parsed:
        """The frame as one of our types, or ``MalformedFrame`` - never any other exception."""
        try:
            return self._parse(frame, ts_recv)
        except RuleViolation:
            raise
        except Exception as error:  # the per-frame boundary: whatever the frame held, it is one bad frame
            raise MalformedFrame("malformed", f"{type(error).__name__} on {rules.preview(frame)}") from None

    def _parse(self, frame: str | bytes | memoryview, ts_recv: int) -> Parsed:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            raise MalformedFrame("not_json", rules.preview(frame)) from None
        if type(message) is not dict:
            raise MalformedFrame("not_an_object", rules.preview(frame))
        stream = message.get("stream")
        if stream is not None:  # combined-stream envelope
            data = message.get("data")
            if type(data) is not dict:
                raise MalformedFrame("bad_envelope", f"stream {rules.preview(stream)} without a data object")
            if data.get("e") == self._trade_event:  # the hot path, first
                try:
                    if self._filter_prints and data.get("X") != "MARKET":
                        return self._other_print(data)
                    return self._trade(data, data[self._trade_id_key], ts_recv)
                except KeyError as missing:
                    raise MalformedFrame("missing_field", f"trade without {missing.args[0]!r}") from None
            return self._payload(data, stream, ts_recv)
        if "result" in message and "id" in message:
            return Control("subscription_reply", message)
        if ("code" in message and "msg" in message) or ("error" in message and "id" in message):
            return Control("error", message)  # documented flat shape, and the nested one seen live
        return self._payload(message, None, ts_recv)

    def _payload(self, data: dict[str, Any], stream: object, ts_recv: int) -> Parsed:
        kind = data.get("e")
        try:
            if kind == "trade" or kind == "aggTrade":
                if kind != self._trade_event:  # recorded beside the published stream, not published
                    return Unpublished(self._symbol(data.get("s")), f"{kind}_stream")
                if self.market == "usdm" and kind == "trade" and data.get("X") != "MARKET":
                    return self._other_print(data)
                return self._trade(data, data["t" if kind == "trade" else "a"], ts_recv)
            if kind == "depthUpdate":
                # Futures partial books are depthUpdate objects too: `<s>@depth5@100ms` vs `<s>@depth@100ms`.
                if _is_partial_stream(stream):
                    return self._futures_partial(data, ts_recv)
                return self._diff(data, ts_recv)
            if kind == "serverShutdown":
                return Control("server_shutdown", data)
            if kind is None and "lastUpdateId" in data:
                return self._spot_partial(data, stream, ts_recv)
        except KeyError as missing:
            raise MalformedFrame("missing_field", f"{kind} without {missing.args[0]!r}") from None
        raise MalformedFrame(
            "unknown_event", f"event {rules.preview(kind)} on stream {rules.preview(stream)}"
        )

    def _other_print(self, data: dict[str, Any]) -> Unpublished:
        kind = data.get("X")
        label = kind if kind in _PRINT_TYPES else "missing" if kind is None else "other"
        return Unpublished(self._symbol(data.get("s")), label)

    def _trade(self, data: dict[str, Any], trade_id: object, ts_recv: int) -> Trade:
        price, qty, maker, ts, venue_symbol = data["p"], data["q"], data["m"], data["T"], data["s"]
        if (
            type(price) is not str
            or type(qty) is not str
            or len(price) > _MAX_DECIMAL
            or len(qty) > _MAX_DECIMAL
            or not _PRICE_AND_QTY.fullmatch(f"{price},{qty}")
        ):
            bad = (
                "bad_price"
                if type(price) is not str
                or len(price) > _MAX_DECIMAL
                or not _PRICE_AND_QTY.fullmatch(f"{price},1")
                else "bad_qty"
            )
            raise MalformedFrame(
                bad,
                f"price {rules.preview(price)}, qty {rules.preview(qty)} (plain decimals > 0, <= 40 chars)",
            )
        if type(maker) is not bool or type(trade_id) is not int or type(ts) is not int:
            raise MalformedFrame("wrong_type", "m must be a bool, the id and T ints")
        if not (0 <= trade_id <= rules.ID_MAX and 0 <= ts <= MAX_MS):
            raise MalformedFrame(
                "out_of_range", f"id {rules.preview(trade_id)} or T {rules.preview(ts)} out of range"
            )
        symbol = self._symbol(venue_symbol)
        # Buyer is the maker -> the aggressor sold.
        return Trade(
            self.exchange,
            symbol,
            trade_id,
            price,
            qty,
            "sell" if maker else "buy",
            maker,
            ts * MS,
            ts_recv,
        )

    def _diff(self, data: dict[str, Any], ts_recv: int) -> DepthDiff:
        first, last, prev = data["U"], data["u"], data.get("pu")
        if type(first) is not int or type(last) is not int or not 0 <= first <= last <= rules.ID_MAX:
            raise MalformedFrame("bad_update_ids", f"U={rules.preview(first)} u={rules.preview(last)}")
        if prev is not None and (type(prev) is not int or not 0 <= prev <= rules.ID_MAX):
            raise MalformedFrame("bad_update_ids", f"pu={rules.preview(prev)}")
        ts = data.get("T") or data["E"]
        return DepthDiff(
            self._symbol(data["s"]),
            first,
            last,
            prev,
            parse_levels(data["b"]),
            parse_levels(data["a"]),
            _ms(ts),
            ts_recv,
        )

    def _futures_partial(self, data: dict[str, Any], ts_recv: int) -> PartialBook:
        return PartialBook(
            self._symbol(data["s"]),
            _int(data["u"]),
            parse_levels(data["b"]),
            parse_levels(data["a"]),
            _ms(data.get("T") or data["E"]),
            ts_recv,
        )

    def _spot_partial(self, data: dict[str, Any], stream: object, ts_recv: int) -> PartialBook:
        if type(stream) is not str or "@" not in stream:
            raise MalformedFrame("bad_envelope", "a partial book needs its stream name for the symbol")
        return PartialBook(
            self._symbol(stream.split("@")[0].upper()),
            _int(data["lastUpdateId"]),
            parse_levels(data["bids"]),
            parse_levels(data["asks"]),
            ts_recv,
            ts_recv,
        )


def _is_partial_stream(stream: object) -> bool:
    if type(stream) is not str or "@" not in stream:
        return False
    name = stream.split("@")[1]
    return name.startswith("depth") and name != "depth"


def _ms(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_MS:
        raise MalformedFrame("bad_time", f"time {rules.preview(value)} (ms, within int64 ns)")
    return value * MS


def _int(value: object) -> int:
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
