"""Property tests on every function that meets outside data: the Binance parser and local book,
the normaliser, the consumers' decoders, and the exact VWAP.

The invariant each time: whatever comes in, the function returns one of its types or raises our
rejection type - never anything else - and what it accepts is exactly what the contracts accept
(so the publisher can always encode it, and a subscriber's book equals the reference).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Context, Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import DepthUpdate, TradeTick, rules
from schemas.rules import RuleViolation
from schemas.wire import decode_depth, decode_trade
from services.common.book import OrderBook, price_key
from services.common.vwap import RollingVwap
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.parse import (
    BinanceParser,
    Control,
    DepthDiff,
    MalformedFrame,
    PartialBook,
    Snapshot,
    Unpublished,
)
from services.connector_feed.events import Depth, Trade
from services.connector_feed.normalize import EventRejected, Normalizer

RECV = 1_700_000_000_000_000_000
WIDE = Context(prec=1000)

# ---- value strategies ------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
plain_decimals = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(min_value=0, max_value=10**12),
    st.text("0123456789", max_size=10),
)
positive_decimals = plain_decimals.filter(lambda d: Decimal(d) > 0)
hostile_decimals = st.sampled_from(
    ["1e400", "1E-8", "NaN", "-1", "-0", "Infinity", "0x10", " 1", "1 ", "+1", "01", "1.", ".5", "1" * 41, ""]
)


def sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid kind of value, sometimes any JSON value at all."""
    return st.one_of(valid, valid, valid, json_values)


def _levels(price: st.SearchStrategy[str], qty: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.lists(st.tuples(price, qty).map(list), max_size=5)


# ---- the Binance parser --------------------------------------------------------------------


@st.composite
def binance_payloads(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["trade", "aggTrade", "depthUpdate", "serverShutdown", None, "other"]))
    payload: dict[str, Any] = {
        "e": kind,
        "E": draw(sometimes(st.integers(0, 2**45))),
        "T": draw(sometimes(st.integers(-(2**60), 2**60))),
        "s": draw(sometimes(st.sampled_from(["BTCUSDT", "ETHUSDT", "BTC.USDT", "", "x" * 70]))),
        "t": draw(sometimes(st.integers(-5, 2**66))),
        "a": draw(sometimes(st.integers(-5, 2**66))),
        "p": draw(sometimes(positive_decimals | hostile_decimals)),
        "q": draw(sometimes(positive_decimals | hostile_decimals)),
        "m": draw(sometimes(st.booleans())),
        "U": draw(sometimes(st.integers(-5, 2**66))),
        "u": draw(sometimes(st.integers(-5, 2**66))),
        "pu": draw(sometimes(st.integers(-5, 2**66))),
        "b": draw(
            sometimes(_levels(positive_decimals | hostile_decimals, plain_decimals | hostile_decimals))
        ),
        "a_": None,
        "lastUpdateId": draw(sometimes(st.integers(0, 2**64))),
    }
    payload["a"] = (
        payload["a"] if kind in ("aggTrade",) else draw(sometimes(_levels(positive_decimals, plain_decimals)))
    )
    dropped = draw(st.lists(st.sampled_from(sorted(payload)), max_size=3))
    return {k: v for k, v in payload.items() if k not in dropped and k != "a_"}


frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    json_values.map(lambda v: json.dumps(v)),
    st.builds(
        lambda stream, data: json.dumps({"stream": stream, "data": data}),
        sometimes(
            st.sampled_from(["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@depth5"])
        ),
        sometimes(binance_payloads()),
    ),
    binance_payloads().map(lambda d: json.dumps(d)),
)


@pytest.mark.parametrize("market", ["spot", "usdm"])
@given(frame=frames)
def test_the_binance_parser_returns_our_types_or_malformed_frame(market: Any, frame: str | bytes) -> None:
    for parser in (BinanceParser(market), BinanceParser(market, venue_symbols=["BTCUSDT"])):
        try:
            item = parser.parse(frame, RECV)
        except MalformedFrame:
            continue
        assert isinstance(item, Trade | DepthDiff | PartialBook | Control | Unpublished)
        if isinstance(item, Trade):  # what the publisher is handed always encodes as the contract
            assert TradeTick.model_validate_json(item.wire()).to_json() == item.wire()
        elif isinstance(item, DepthDiff | PartialBook):
            rules.levels(item.bids)
            rules.levels(item.asks)
            rules.symbol(item.symbol)
            assert 0 <= item.ts_event <= rules.TIMESTAMP_MAX


def test_the_parser_survives_deep_nesting_and_huge_numbers() -> None:
    deep = "[" * 990 + "]" * 990
    for frame in (
        f'{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":{deep},"a":[]}}}}',
        f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":{deep},"q":"1","T":1,"m":true}}}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":18500000000000,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":18446744073709551616,"p":"1","q":"1","T":1,"m":true}}',
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":["x"],"t":1,"p":"1","q":"1","T":1,"m":true}}',
    ):
        with pytest.raises(MalformedFrame):
            BinanceParser("spot").parse(frame, RECV)


# ---- the local order book ------------------------------------------------------------------

PRICES = [f"{p}.0" for p in range(90, 111)]


@st.composite
def venue_histories(
    draw: st.DrawFn,
) -> tuple[dict[str, str], dict[str, str], list[DepthDiff], list[tuple[str, int]]]:
    """A venue's true book at id 0, its true diffs (ids chained), and what the client sees: the
    diffs with duplicates, gaps and repeats, and snapshots taken at the venue's current id."""
    futures = draw(st.booleans())
    bids = dict.fromkeys(PRICES[:8], "1")
    asks = dict.fromkeys(PRICES[12:], "1")
    diffs: list[DepthDiff] = []
    last = 0
    for _ in range(draw(st.integers(1, 25))):
        first = last + (draw(st.integers(1, 3)) if futures else 1)
        new_last = first + draw(st.integers(0, 3))
        bid = [
            (p, draw(st.sampled_from(["0", "1", "2.5"])))
            for p in draw(st.lists(st.sampled_from(PRICES[:10]), max_size=3))
        ]
        ask = [
            (p, draw(st.sampled_from(["0", "3", "0.5"])))
            for p in draw(st.lists(st.sampled_from(PRICES[11:]), max_size=3))
        ]
        diffs.append(DepthDiff("X", first, new_last, last if futures else None, bid, ask, new_last, new_last))
        last = new_last
    script: list[tuple[str, int]] = []
    position = 0  # index of the next true diff the venue will emit
    for _ in range(draw(st.integers(1, 60))):
        action = draw(st.sampled_from(["next", "next", "next", "skip", "repeat", "snapshot"]))
        if action in ("next", "skip") and position < len(diffs):
            script.append(("diff" if action == "next" else "gap", position))
            position += 1
        elif action == "repeat" and position > 0:
            script.append(("diff", draw(st.integers(max(0, position - 3), position - 1))))
        elif action == "snapshot":
            script.append(("snapshot", position))
    return bids, asks, diffs, script


def _truth(bids: dict[str, str], asks: dict[str, str], diffs: list[DepthDiff], upto: int) -> OrderBook:
    book = OrderBook()
    book.reset(list(bids.items()), list(asks.items()), 0)
    for diff in diffs[:upto]:
        book.apply(diff.bids, diff.asks, diff.last_update_id)
    return book


def _levels_of(book: OrderBook) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {price_key(p): q for p, q in book.bids()},
        {price_key(p): q for p, q in book.asks()},
    )


@given(history=venue_histories())
def test_the_local_book_equals_the_venue_whenever_it_says_synced(history: Any) -> None:
    bids, asks, diffs, script = history
    futures = any(d.prev_last_update_id is not None for d in diffs)
    book = LocalBook("binance", "X", futures=futures)
    subscriber = OrderBook()  # rebuilt from what the book publishes, as a consumer would
    ids_at = [0] + [d.last_update_id for d in diffs]
    for action, index in script:
        if action == "gap":
            continue
        if action == "diff":
            published = book.on_diff(diffs[index])
        else:
            truth = _truth(bids, asks, diffs, index)
            published = book.on_snapshot(Snapshot(ids_at[index], truth.bids(), truth.asks()))
        for update in published:
            if update.is_snapshot:
                subscriber.reset(update.bids, update.asks, update.last_update_id)
            else:
                subscriber.apply(update.bids, update.asks, update.last_update_id)
        if book.state == "synced":
            upto = ids_at.index(book.last_update_id)
            assert _levels_of(book.book) == _levels_of(_truth(bids, asks, diffs, upto))
            assert _levels_of(subscriber) == _levels_of(book.book)


# ---- the normaliser ------------------------------------------------------------------------

timestamps = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.floats(),
    st.text(max_size=5),
)
any_decimal = st.one_of(
    positive_decimals,
    hostile_decimals,
    st.floats(),
    st.decimals(),
    st.integers(min_value=-(2**70), max_value=2**70),
    json_values,
)


@st.composite
def connector_events(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["trade", "depth", "quote", None]))
    event: dict[Any, Any] = {
        "type": kind,
        "symbol": draw(sometimes(st.sampled_from(["BTCUSDT", "ETHUSDT", "BTC.USDT"]))),
        "timestamp": draw(timestamps),
        "price": draw(any_decimal),
        "qty": draw(any_decimal),
        "side": draw(sometimes(st.sampled_from(["buy", "sell"]))),
        "is_buyer_maker": draw(sometimes(st.booleans())),
        "id": draw(sometimes(st.integers(-5, 2**66))),
        "bids": draw(sometimes(st.lists(st.tuples(any_decimal, any_decimal), max_size=3))),
        "asks": draw(sometimes(st.lists(st.tuples(any_decimal, any_decimal), max_size=3))),
        "last_update_id": draw(sometimes(st.integers(-5, 2**66))),
        "first_update_id": draw(sometimes(st.integers(-5, 2**66))),
        "is_snapshot": draw(sometimes(st.booleans())),
    }
    if draw(st.booleans()):
        event[draw(st.sampled_from([("x",), "exchange"]))] = draw(sometimes(st.just("binance")))
    dropped = draw(st.lists(st.sampled_from([k for k in event if isinstance(k, str)]), max_size=3))
    return draw(st.sampled_from([{k: v for k, v in event.items() if k not in dropped}, draw(json_values)]))


@given(event=connector_events())
def test_the_normaliser_returns_encodable_events_or_event_rejected(event: object) -> None:
    try:
        normalised = Normalizer("stub", ["BTCUSDT"]).normalize(event, RECV)
    except EventRejected:
        return
    if isinstance(normalised, Trade):
        assert TradeTick.model_validate_json(normalised.wire()).to_json() == normalised.wire()
    else:
        assert isinstance(normalised, Depth)
        assert DepthUpdate.model_validate_json(normalised.wire()).to_json() == normalised.wire()


# ---- the consumers' decoders ---------------------------------------------------------------

VALID_TRADE = TradeTick(
    exchange="binance",
    symbol="BTCUSDT",
    trade_id=7,
    price=Decimal("50000.10"),
    qty=Decimal("0.001"),
    side="buy",
    is_buyer_maker=False,
    ts_event=1,
    ts_recv=2,
).model_dump(mode="json")
VALID_DEPTH = DepthUpdate(
    exchange="binance",
    symbol="BTCUSDT",
    bids=[(Decimal("1.5"), Decimal("2"))],
    asks=[(Decimal("1.6"), Decimal("0"))],
    is_snapshot=False,
    first_update_id=3,
    last_update_id=4,
    ts_event=1,
    ts_recv=2,
).model_dump(mode="json")
field_values = st.one_of(
    json_values,
    positive_decimals,
    hostile_decimals,
    st.integers(-(2**65), 2**65),
    st.sampled_from(["buy", "sell", "flat", 1, 2, True, None, "BTCUSDT", "btc-usdt_1", "BTC.X", "binance"]),
    _levels(positive_decimals | hostile_decimals, plain_decimals | hostile_decimals),
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    message = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "add"]))
        key = draw(st.sampled_from(sorted(base)))
        if action == "set":
            message[key] = draw(field_values)
        elif action == "drop":
            message.pop(key, None)
        else:
            message[draw(st.text(max_size=4))] = draw(json_values)
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("base", "decode", "model"),
    [(VALID_TRADE, decode_trade, TradeTick), (VALID_DEPTH, decode_depth, DepthUpdate)],
    ids=["trade", "depth"],
)
@given(data=st.data())
def test_the_fast_decoders_accept_exactly_what_the_contracts_accept(
    base: dict[str, Any], decode: Any, model: Any, data: st.DataObject
) -> None:
    raw = data.draw(st.one_of(mutated(base), st.binary(max_size=300)))
    try:
        fast = decode(raw)
    except RuleViolation:
        fast = None
    try:
        contract = model.model_validate_json(raw)
    except ValidationError:
        contract = None

    assert (fast is None) == (contract is None), (raw, fast, contract)
    if fast is not None:
        assert orjson.loads(model.model_validate(orjson.loads(raw)).to_json()) == orjson.loads(
            contract.to_json()
        )
        for name in ("price", "qty"):
            if hasattr(fast, name):
                assert Decimal(getattr(fast, name)) == getattr(contract, name)
        if hasattr(fast, "bids"):
            assert [(Decimal(p), Decimal(q)) for p, q in fast.bids] == list(contract.bids)


# ---- the exact VWAP ------------------------------------------------------------------------

rule_decimals = (
    st.one_of(
        st.integers(1, 10**12).map(str),
        st.builds(
            lambda d: str(d),
            st.decimals(
                min_value=Decimal("1e-30"),
                max_value=Decimal("1e30"),
                places=None,
                allow_nan=False,
                allow_infinity=False,
            ),
        ),
        st.sampled_from(["9" * 40, "0." + "0" * 37 + "1", "1" + "0" * 39, "0.00000001"]),
    )
    .map(lambda s: format(Decimal(s), "f"))
    .filter(lambda s: len(s) <= rules.DECIMAL_MAX_LENGTH and Decimal(s) > 0)
)


@given(trades=st.lists(st.tuples(st.integers(0, 50), rule_decimals, rule_decimals), min_size=1, max_size=40))
def test_the_rolling_vwap_is_exact_for_any_rule_valid_trades(trades: list[tuple[int, str, str]]) -> None:
    vwap = RollingVwap(window_ns=10)
    seen: list[tuple[int, Decimal, Decimal]] = []
    ts = 0
    for step, price, qty in trades:
        ts += step
        vwap.add(ts, Decimal(price), Decimal(qty))
        seen.append((ts, Decimal(price), Decimal(qty)))
        window = [(p, q) for t, p, q in seen if t > ts - 10]
        notional = volume = Decimal(0)
        for p, q in window:  # brute force, in a context far wider than any sum needs
            notional = WIDE.add(notional, WIDE.multiply(p, q))
            volume = WIDE.add(volume, q)
        expected = WIDE.divide(notional, volume).quantize(Decimal("1e-10"), context=WIDE)
        assert vwap.value == expected
        assert len(vwap) == len(window)
    assert vwap.repairs == 0


def test_float_nan_never_reaches_a_contract() -> None:
    with pytest.raises(EventRejected):
        Normalizer("stub", ["BTCUSDT"]).normalize(
            {
                "type": "trade",
                "timestamp": 10**18,
                "price": math.nan,
                "qty": 1,
                "side": "buy",
                "is_buyer_maker": False,
                "id": 1,
            },
            RECV,
        )


# ---- the fused level-array rule ------------------------------------------------------------


def _level_ok(level: object) -> bool:
    """The per-value rules, one string at a time: what ``rules.levels`` must agree with."""
    if type(level) is not list or len(level) != 2 or not all(type(v) is str for v in level):
        return False
    try:
        rules.decimal_text(level[0], "price", positive=True)
        rules.decimal_text(level[1], "qty", positive=False)
    except RuleViolation:
        return False
    return True


@given(
    st.one_of(
        _levels(positive_decimals | hostile_decimals, plain_decimals | hostile_decimals),
        st.lists(st.one_of(json_values, st.lists(plain_decimals, max_size=3)), max_size=4),
        json_values,
    )
)
def test_the_fused_level_rule_accepts_exactly_what_the_per_value_rules_accept(raw: Any) -> None:
    expected = type(raw) is list and all(_level_ok(level) for level in raw)
    try:
        rules.levels(raw)
        accepted = True
    except RuleViolation:
        accepted = False
    assert accepted == expected
