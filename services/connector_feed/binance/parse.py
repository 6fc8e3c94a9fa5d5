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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from schemas import rules
from schemas.rules import RuleViolation
from services.connector_feed.binance.parse_depth import (
    MAX_MS,
    MS,
    DepthDiff,
    MalformedFrame,
    PartialBook,
    Snapshot,
    is_partial_stream,
    parse_diff,
    parse_futures_partial,
    parse_levels,
    parse_rest_snapshot,
    parse_spot_partial,
)
from services.connector_feed.binance.parse_fast import PRICE_AND_QTY, FastDepth, FastTrades
from services.connector_feed.events import Trade

__all__ = [  # the depth types and functions live in parse_depth; importable from here as well
    "EXCHANGE",
    "BinanceParser",
    "Control",
    "DepthDiff",
    "MalformedFrame",
    "Market",
    "Parsed",
    "PartialBook",
    "Snapshot",
    "Unpublished",
    "instrument_id",
    "parse_levels",
    "parse_rest_snapshot",
]

#: A trade's price and quantity in one match: both plain decimals > 0 (lengths checked beside it).
_PRICE_AND_QTY = PRICE_AND_QTY
_MAX_DECIMAL = rules.DECIMAL_MAX_LENGTH
#: USD-M @trade print types other than MARKET (a bounded label set; anything else is "other").
_PRINT_TYPES = frozenset({"INSURANCE_FUND", "ADL", "NA"})
#: Frames longer than this try the depth diff's fast path first (a trade frame is ~200-260 bytes;
#: a diff of five levels is longer). Either order gives the same answer; this only saves a failed try.
_DEPTH_FIRST = 320
#: Venue symbols a parser without a configured list remembers (a hostile stream cannot grow it).
_MAX_KNOWN_SYMBOLS = 10_000

Market = Literal["spot", "usdm"]
EXCHANGE = {"spot": "binance", "usdm": "binance_usdm"}


@dataclass(slots=True)
class Unpublished:
    """A valid frame that is not published: a USD-M ``@trade`` print that is no market trade (``X``:
    INSURANCE_FUND, ADL, NA ...), or a trade of the stream that is only recorded (USD-M ``@trade``
    beside the published ``@aggTrade``). ``kind`` is a bounded label; ``trade_id``: a non-market
    print's id, in the sequence of the published trades (so skipping it is no gap)."""

    symbol: str
    kind: str
    trade_id: int | None = None


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
        #: The trade stream's fast path (``parse_fast``): same answers, a fraction of the cost.
        self.fast = FastTrades(self._trade_event, self.exchange, self._ids, self._filter_prints)
        self.fast_depth = FastDepth(self._ids)  # and the depth diffs' (same answers, same way)

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
        if len(frame) > _DEPTH_FIRST:  # most likely a depth diff: a failed try costs a raised error
            fast: Parsed | None = self.fast_depth.parse(frame, ts_recv) or self.fast.parse(frame, ts_recv)
        else:
            fast = self.fast.parse(frame, ts_recv) or self.fast_depth.parse(frame, ts_recv)
        if fast is not None:
            return fast
        try:
            parsed = self._parse(frame, ts_recv)
            if type(parsed) is Trade:
                self.fast.misses += 1  # a trade the fast path did not take (health shows the count)
            elif type(parsed) is DepthDiff:
                self.fast_depth.misses += 1  # and a depth diff
            return parsed
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
                if is_partial_stream(stream):
                    return parse_futures_partial(data, ts_recv, self._symbol)
                return parse_diff(data, ts_recv, self._symbol)
            if kind == "serverShutdown":
                return Control("server_shutdown", data)
            if kind is None and "lastUpdateId" in data:
                return parse_spot_partial(data, stream, ts_recv, self._symbol)
        except KeyError as missing:
            raise MalformedFrame("missing_field", f"{kind} without {missing.args[0]!r}") from None
        raise MalformedFrame(
            "unknown_event", f"event {rules.preview(kind)} on stream {rules.preview(stream)}"
        )

    def _other_print(self, data: dict[str, Any]) -> Unpublished:
        kind = data.get("X")
        label = kind if kind in _PRINT_TYPES else "missing" if kind is None else "other"
        trade_id = data.get("t")
        valid = type(trade_id) is int and 0 <= trade_id <= rules.ID_MAX
        return Unpublished(self._symbol(data.get("s")), label, trade_id if valid else None)

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
