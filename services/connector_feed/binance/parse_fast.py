"""The fast paths - trade frames (``FastTrades``) and depth diffs (``FastDepth``, at the end): one
typed msgspec decode instead of a dict and a dozen checks.

Most frames on a Binance connection are trades of the one trade stream it carries, in the
documented shape. ``FastTrades`` decodes exactly that shape - every documented field declared and
typed, no other field allowed, ids and times within range - in C, and then applies the same
price/quantity rule as the full parser. It returns a ``Trade`` only when it is sure; anything else
(another event, an unknown or extra field, a bad value, a symbol the parser has not met yet, a
USD-M print that is no market trade) returns None, and ``BinanceParser`` parses the frame the full
way, which decides and names every refusal. So the fast path changes the cost, never the result:
``tests/test_parse_fast.py`` holds the two paths to the same answer on arbitrary frames.

``misses`` counts trades of the connection's own stream that took the long way: if Binance adds a
field, that number climbs (health shows it) and the fast path wants the new field declared.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas import rules
from schemas.rules import LEVELS_UNBOUNDED_TEXT
from services.connector_feed.binance.parse_depth import DepthDiff, is_partial_stream
from services.connector_feed.events import Trade

MS = 1_000_000
_INT64_MAX = 2**63 - 1  # msgspec bounds are int64: larger ids (never seen) take the full path
_Id = Annotated[int, Meta(ge=0, le=_INT64_MAX)]
_Ms = Annotated[int, Meta(ge=0, le=rules.TIMESTAMP_MAX // MS)]
_Decimal = Annotated[str, Meta(max_length=rules.DECIMAL_MAX_LENGTH)]
#: Longer frames skip the fast path (a trade frame is ~200 bytes, ~400 with every value at its
#: longest; depth diffs are longer): correct either way, this only saves a failed decode.
MAX_TRADE_FRAME = 512
#: Shorter frames are no depth diff (~180 bytes with no level at all): not worth a try.
MIN_DEPTH_FRAME = 120
PRICE_AND_QTY = re.compile(rules.POSITIVE_DECIMAL_FAST_TEXT + "," + rules.POSITIVE_DECIMAL_FAST_TEXT)


class _Trade(msgspec.Struct, forbid_unknown_fields=True):
    """``<symbol>@trade``: spot (with ``M``) and USD-M (with ``X``, the print type)."""

    e: Literal["trade"]  # required (a struct tag would be optional outside a union)
    E: int
    s: str
    t: _Id
    p: _Decimal
    q: _Decimal
    T: _Ms
    m: bool
    M: bool = False
    X: str = ""  # missing: no market trade (the full parser counts it)


class _AggTrade(msgspec.Struct, forbid_unknown_fields=True):
    """``<symbol>@aggTrade``: spot (with ``M``) and USD-M (with ``nq``, the normal quantity)."""

    e: Literal["aggTrade"]
    E: int
    s: str
    a: _Id
    p: _Decimal
    q: _Decimal
    f: int
    l: int  # noqa: E741 - Binance's name
    T: _Ms
    m: bool
    M: bool = False
    nq: str = ""


class _TradeEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    data: _Trade


class _AggTradeEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    data: _AggTrade


class FastTrades:
    """The fast path for one connection's trade stream (``trade`` or ``aggTrade``)."""

    def __init__(self, trade_event: str, exchange: str, ids: dict[str, str], market_only: bool) -> None:
        envelope: type[_TradeEnvelope | _AggTradeEnvelope] = (
            _TradeEnvelope if trade_event == "trade" else _AggTradeEnvelope
        )
        self._decode = msgspec.json.Decoder(envelope).decode
        self._exchange = exchange
        self._ids = ids  # venue symbol -> instrument id, as the full parser knows them (shared)
        self._market_only = market_only  # USD-M @trade: only X == MARKET prints are trades
        self.misses = 0

    def parse(self, frame: str | bytes | memoryview, ts_recv: int) -> Trade | None:
        if len(frame) > MAX_TRADE_FRAME:  # a depth frame: not worth a try
            return None
        try:
            data: _Trade | _AggTrade = self._decode(frame).data
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        symbol = self._ids.get(data.s)
        if (
            symbol is None
            or PRICE_AND_QTY.fullmatch(f"{data.p},{data.q}") is None
            or (self._market_only and type(data) is _Trade and data.X != "MARKET")
        ):
            return None
        maker = data.m
        trade_id = data.a if type(data) is _AggTrade else data.t  # type: ignore[union-attr]
        return Trade(
            self._exchange,
            symbol,
            trade_id,
            data.p,
            data.q,
            "sell" if maker else "buy",  # buyer is the maker -> the aggressor sold
            maker,
            data.T * MS,
            ts_recv,
        )


class _DepthDiff(msgspec.Struct, forbid_unknown_fields=True):
    """``<symbol>@depth[@100ms]``: spot (``e,E,s,U,u,b,a``) and USD-M (adds ``T`` and ``pu``)."""

    e: Literal["depthUpdate"]
    E: _Ms
    s: str
    U: _Id
    u: _Id
    b: list[tuple[_Decimal, _Decimal]]  # each value's length is bounded here, in C
    a: list[tuple[_Decimal, _Decimal]]
    T: _Ms = 0
    pu: _Id | None = None


class _DepthEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    data: _DepthDiff


_decode_depth = msgspec.json.Decoder(_DepthEnvelope).decode
#: Stream names a FastDepth remembers as diff streams or not (a hostile stream cannot grow it).
_MAX_STREAMS = 4096
#: The frame's tail as Binance writes it: ``"b":[levels],"a":[levels]}}``, every value a plain
#: decimal, every price > 0 (``schemas.rules.LEVELS_UNBOUNDED_TEXT``: the decoder bounds lengths).
_B_KEY = re.compile(rb'"b":\[')
_TAIL = re.compile(rb'"b":(?:' + LEVELS_UNBOUNDED_TEXT + rb'),"a":(?:' + LEVELS_UNBOUNDED_TEXT + rb")\}\}")


class FastDepth:
    """The fast path for depth diffs in the documented shape: the combined-stream envelope, the
    documented fields and no other, ids and times in range, compact levels last.

    The levels are checked with one pattern over the frame's tail, from the first ``"b":[`` to the
    end. That tail can only be the ``b`` and ``a`` members of the frame's last object - ``data``
    (no string can hold an unescaped quote, and nothing may follow the two closing braces) - and a
    JSON decoder keeps a repeated key's last value (msgspec does, as orjson does): so the levels
    checked are exactly the levels decoded. Anything else - a partial book, another event,
    spacing the venue never sends, a repeated ``b``, a value that breaks a rule - returns None
    and takes the full parser, which decides and names every refusal: same answers, less cost
    (``tests/test_parse_fast.py``).
    """

    def __init__(self, ids: dict[str, str]) -> None:
        self._ids = ids  # venue symbol -> instrument id (the parser's, shared)
        self.misses = 0  # diffs the full parser took (``BinanceParser.parse`` counts them)
        self._diff_streams: dict[str, bool] = {}  # stream name -> a diff stream (not a partial book)

    def parse(self, frame: str | bytes | memoryview, ts_recv: int) -> DepthDiff | None:
        if len(frame) < MIN_DEPTH_FRAME:
            return None
        try:
            envelope = _decode_depth(frame)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        data = envelope.data
        symbol = self._ids.get(data.s)
        stream = envelope.stream
        diff_stream = self._diff_streams.get(stream)
        if diff_stream is None:  # a connection carries a few streams: remember, within a bound
            diff_stream = not is_partial_stream(stream)
            if len(self._diff_streams) < _MAX_STREAMS:
                self._diff_streams[stream] = diff_stream
        if symbol is None or data.u < data.U or not diff_stream:
            return None  # an unknown symbol, ids out of order, a futures partial book: the full parser's
        raw = frame.encode() if isinstance(frame, str) else frame
        tail = _B_KEY.search(raw)
        if tail is None or _TAIL.fullmatch(raw, tail.start()) is None:
            return None
        return DepthDiff(symbol, data.U, data.u, data.pu, data.b, data.a, (data.T or data.E) * MS, ts_recv)
