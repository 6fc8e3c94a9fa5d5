"""The fast paths (trades, depth diffs) change the cost, never the answer: on any frame, a parser
with them and a parser without them return the same event or refuse with the same reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.connector_feed.binance.dedupe import TradeDedupe
from services.connector_feed.binance.parse import BinanceParser, DepthDiff, MalformedFrame
from services.connector_feed.events import Depth, Trade
from tests.test_properties import hostile_decimals, json_values, plain_decimals, positive_decimals

RECV = 1_770_000_000_000_000_000
VENUES = ["BTCUSDT", "ETHUSDT"]


class _NoFastPath:
    misses = 0

    def parse(self, frame: object, ts_recv: int) -> None:
        return None


def _outcome(parser: BinanceParser, frame: str | bytes | memoryview) -> tuple[str, Any]:
    try:
        parsed = parser.parse(frame, RECV)
    except MalformedFrame as error:
        return "refused", error.reason
    if type(parsed) is DepthDiff:  # the fast path's levels are tuples, the full parser's lists
        return "ok", _as_published(parsed)
    return "ok", parsed


def _as_published(diff: DepthDiff) -> tuple[Any, ...]:
    """The diff with its levels as lists, and the bytes a DepthUpdate of it puts on the wire."""
    bids, asks = [list(level) for level in diff.bids], [list(level) for level in diff.asks]
    depth = Depth(
        "binance",
        diff.symbol,
        diff.bids,
        diff.asks,
        False,
        diff.first_update_id,
        diff.last_update_id,
        diff.prev_last_update_id,
        diff.ts_event,
        diff.ts_recv,
    )
    return (
        diff.symbol,
        diff.first_update_id,
        diff.last_update_id,
        diff.prev_last_update_id,
        bids,
        asks,
        diff.ts_event,
        diff.ts_recv,
        depth.wire(),
    )


def _trade_payload(kind: str, market: str) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, Any] = {
        "e": st.just(kind),
        "E": st.integers(0, 2**45),
        "s": st.sampled_from([*VENUES, "XRPUSDT", "btcusdt"]),
        "p": positive_decimals,
        "q": positive_decimals,
        "T": st.integers(0, 2**45),
        "m": st.booleans(),
    }
    if kind == "trade":
        fields["t"] = st.integers(0, 2**40)
    else:
        fields |= {"a": st.integers(0, 2**40), "f": st.integers(0, 2**40), "l": st.integers(0, 2**40)}
    if market == "spot":
        fields["M"] = st.booleans()
    elif kind == "trade":
        fields["X"] = st.sampled_from(["MARKET", "MARKET", "ADL", "INSURANCE_FUND", "NA"])
    else:
        fields["nq"] = positive_decimals
    return st.fixed_dictionaries(fields)


odd_values = st.one_of(
    json_values,
    hostile_decimals,
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, 2**64 - 1, 2**64, -1, 1.0, 1e3, True, None, "MARKET"]),
)


def _bend(draw: st.DrawFn, data: dict[str, Any], actions: list[str], extra_keys: list[str]) -> None:
    """Up to two changes to a payload: a field set to anything, dropped, or an extra field added."""
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(actions))
        key = draw(st.sampled_from(sorted(data)))
        if action == "set":
            data[key] = draw(odd_values)
        elif action == "drop":
            data.pop(key)
        elif action == "add":
            data[draw(st.sampled_from(extra_keys))] = draw(odd_values)


@st.composite
def trade_frames(draw: st.DrawFn, kind: str, market: str) -> str:
    """A documented trade frame, sometimes bent: a field dropped, set to anything, an extra field,
    a duplicate key, or a stray byte."""
    data = draw(_trade_payload(kind, market))
    _bend(draw, data, ["set", "drop", "add", "none"], ["Z", "b", "a", "X", "nq", "ee"])
    text = json.dumps({"stream": f"btcusdt@{kind}", "data": data}, separators=(",", ":"))
    twist = draw(st.sampled_from(["none", "none", "dup", "surrogate", "bigint", "space"]))
    if twist == "dup":  # the same key twice: the last one counts (for both paths)
        key = draw(st.sampled_from(["p", "q", "s", "e", "m"]))
        text = text.replace('"data":{', f'"data":{{"{key}":{json.dumps(draw(odd_values))},', 1)
    elif twist == "surrogate":
        text = text.replace('"E":', '"E":"\\ud800","E0":', 1)
    elif twist == "bigint":
        text = text.replace('"E":', '"E":1' + "0" * 400 + ',"E1":', 1)
    elif twist == "space":
        text = text.replace(",", " , ")
    return text


@pytest.mark.parametrize(
    ("market", "stream"), [("spot", "trade"), ("spot", "aggTrade"), ("usdm", "aggTrade"), ("usdm", "trade")]
)
@given(data=st.data())
def test_the_fast_path_answers_exactly_as_the_full_parser(
    market: Any, stream: str, data: st.DataObject
) -> None:
    frame = data.draw(
        st.one_of(
            trade_frames(stream, market), trade_frames("aggTrade" if stream == "trade" else "trade", market)
        )
    )
    for symbols in (VENUES, None):
        fast = BinanceParser(market, stream, symbols)
        full = BinanceParser(market, stream, symbols)
        full.fast = _NoFastPath()  # type: ignore[assignment]

        assert _outcome(fast, frame) == _outcome(full, frame)


level_values = st.one_of(
    positive_decimals, positive_decimals, st.just("0"), st.just("0.00000000"), hostile_decimals, json_values
)


@st.composite
def depth_frames(draw: st.DrawFn, market: str) -> str | bytes | memoryview:
    """A documented depth diff, sometimes bent: a level value of any kind, a field set to anything,
    dropped or added, a repeated key, spacing, a partial-book stream, a tail after the braces."""
    level = st.lists(
        st.one_of(st.tuples(positive_decimals, plain_decimals), st.tuples(level_values, level_values)),
        max_size=4,
    )
    first = draw(st.integers(0, 2**40))
    data: dict[str, Any] = {
        "e": "depthUpdate",
        "E": draw(st.integers(0, 2**45)),
        "s": draw(st.sampled_from([*VENUES, "XRPUSDT", "btcusdt"])),
        "U": first,
        "u": first + draw(st.integers(-1, 50)),
    }
    if market == "usdm":
        data |= {"T": draw(st.integers(0, 2**45)), "pu": draw(st.integers(0, 2**40))}
    data |= {"b": draw(level), "a": draw(level)}
    _bend(draw, data, ["set", "drop", "add", "none", "none"], ["Z", "T", "pu", "p", "ee"])
    stream = draw(st.sampled_from(["btcusdt@depth@100ms", "btcusdt@depth", "btcusdt@depth5@100ms"]))
    text = json.dumps({"stream": stream, "data": data}, separators=(",", ":"))
    twist = draw(
        st.sampled_from(["none", "none", "none", "dup_b", "dup_a", "dup_data", "space", "tail", "cut"])
    )
    if twist == "dup_b":  # a second "b" before the real one: the last one counts (for both paths)
        text = text.replace('"data":{', f'"data":{{"b":{json.dumps(draw(level))},', 1)
    elif twist == "dup_a":
        text = text.replace('"data":{', f'"data":{{"a":{json.dumps(draw(level))},', 1)
    elif twist == "dup_data":
        text = text.replace('{"stream":', '{"data":{"e":"depthUpdate","b":[["1","1"]]},"stream":', 1)
    elif twist == "space":
        text = text.replace(",", ", ", draw(st.integers(1, 3)))
    elif twist == "tail":
        text += draw(st.sampled_from([" ", "\n", "}", ',"b":[["1","1"]]}']))
    elif twist == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    kind = draw(st.sampled_from(["str", "bytes", "memoryview"]))
    return text if kind == "str" else text.encode() if kind == "bytes" else memoryview(text.encode())


@pytest.mark.parametrize("market", ["spot", "usdm"])
@given(data=st.data())
def test_the_depth_fast_path_answers_exactly_as_the_full_parser(market: Any, data: st.DataObject) -> None:
    frame = data.draw(depth_frames(market))
    for symbols in (VENUES, None):
        fast = BinanceParser(market, None, symbols)
        full = BinanceParser(market, None, symbols)
        full.fast_depth = _NoFastPath()  # type: ignore[assignment]
        if symbols is None:  # a parser without a list learns symbols as it meets them: teach both
            for parser in (fast, full):
                parser.parse(
                    json.dumps({"stream": "btcusdt@depth", "data": {**_DOCUMENTED_DIFF, "s": "BTCUSDT"}}),
                    RECV,
                )

        assert _outcome(fast, frame) == _outcome(full, frame)


_DOCUMENTED_DIFF: dict[str, Any] = {
    "e": "depthUpdate",
    "E": 1_770_000_000_123,
    "s": "BTCUSDT",
    "U": 157,
    "u": 160,
    "b": [["0.0024", "10"], ["0.0023", "0"]],
    "a": [["0.0026", "100.50000000"]],
}


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        ({}, True),
        ({"b": [], "a": []}, True),
        ({"b": [["0", "1"]]}, False),  # a zero price: refused, by the full parser
        ({"b": [["0.000", "1"]]}, False),
        ({"a": [["1e3", "1"]]}, False),
        ({"a": [["01.5", "1"]]}, False),
        ({"a": [["1." + "0" * 40, "1"]]}, False),  # over 40 characters (msgspec's bound)
        ({"a": [["1", "-1"]]}, False),
        ({"U": 161}, False),  # U > u
        ({"extra": 1}, False),  # a field Binance might add one day: the long way, same answer
    ],
)
def test_the_depth_fast_path_takes_the_documented_diffs_and_leaves_the_rest(
    change: dict[str, Any], fast: bool
) -> None:
    """Direct cases beside the property: what the fast path takes, and that what it leaves is
    answered the same by the full parser."""
    frame = json.dumps(
        {"stream": "btcusdt@depth@100ms", "data": {**_DOCUMENTED_DIFF, **change}}, separators=(",", ":")
    )
    parser = BinanceParser("spot", None, VENUES)
    taken = parser.fast_depth.parse(frame.encode(), RECV)
    full = BinanceParser("spot", None, VENUES)
    full.fast_depth = _NoFastPath()  # type: ignore[assignment]

    assert (taken is not None) == fast
    assert _outcome(parser, frame) == _outcome(full, frame)
    assert parser.fast_depth.misses == (0 if fast or _outcome(full, frame)[0] == "refused" else 1)
    if fast:
        assert isinstance(taken, DepthDiff) and taken.ts_event == _DOCUMENTED_DIFF["E"] * 1_000_000


def test_the_fast_path_takes_the_documented_frames_and_counts_what_it_leaves() -> None:
    parser = BinanceParser("spot", "trade", VENUES)
    documented = {
        "e": "trade",
        "E": 1,
        "s": "BTCUSDT",
        "t": 7,
        "p": "1.5",
        "q": "2",
        "T": 3,
        "m": True,
        "M": True,
    }
    extended = {**documented, "t": 8, "new": 1}  # a field Binance might add one day

    first = parser.parse(json.dumps({"stream": "btcusdt@trade", "data": documented}), RECV)
    second = parser.parse(json.dumps({"stream": "btcusdt@trade", "data": extended}), RECV)

    assert isinstance(first, Trade) and isinstance(second, Trade)
    assert (first.trade_id, second.trade_id, first.side) == (7, 8, "sell")
    assert parser.fast.misses == 1  # the extended one took the long way, and it shows (health)


# ---- trade de-duplication: a watermark and its holes, held to the plain rule ------------------


@given(
    st.lists(
        st.tuples(st.sampled_from(["admit", "admit", "admit", "skip"]), st.integers(1000, 1060)),
        max_size=120,
    )
)
def test_dedupe_keeps_each_trade_id_once_and_counts_the_rest(steps: list[tuple[str, int]]) -> None:
    """Within the window (ids span far less than RECENT_TRADE_IDS): a trade is kept if and only
    if its id was not kept before; a skipped id (a non-market print) is never taken as seen."""
    dedupe, kept_before, duplicates = TradeDedupe(), set[int](), 0
    for action, trade_id in steps:
        if action == "skip":
            dedupe.skip("X", trade_id)
            continue
        expected = trade_id not in kept_before
        assert dedupe.admit("X", trade_id) == expected, (trade_id, sorted(kept_before))
        kept_before.add(trade_id)
        duplicates += not expected
    assert dedupe.duplicates == duplicates


def test_dedupe_in_order_ids_cost_no_memory_and_gaps_are_counted() -> None:
    dedupe = TradeDedupe()
    kept = [dedupe.admit("X", i) for i in range(1, 10_001)]
    jump = dedupe.admit("X", 10_005)  # 4 ids missing
    late = [dedupe.admit("X", i) for i in (10_003, 10_003, 10_004, 9_000, 1)]

    assert all(kept) and jump
    assert late == [True, False, True, False, True]  # a hole filled once; 9,000 seen; 1 beyond the window
    assert dedupe.gaps == {"X": 1} and dedupe.missing == {"X": 4} and dedupe.duplicates == 2
