"""The trade frame's fast path changes the cost, never the answer: on any frame, a parser with it
and a parser without it return the same trade or refuse with the same reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.connector_feed.binance.dedupe import TradeDedupe
from services.connector_feed.binance.parse import BinanceParser, MalformedFrame
from services.connector_feed.events import Trade
from tests.test_properties import hostile_decimals, json_values, positive_decimals

RECV = 1_770_000_000_000_000_000
VENUES = ["BTCUSDT", "ETHUSDT"]


class _NoFastPath:
    misses = 0

    def parse(self, frame: object, ts_recv: int) -> None:
        return None


def _outcome(parser: BinanceParser, frame: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", parser.parse(frame, RECV)
    except MalformedFrame as error:
        return "refused", error.reason


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


@st.composite
def trade_frames(draw: st.DrawFn, kind: str, market: str) -> str:
    """A documented trade frame, sometimes bent: a field dropped, set to anything, an extra field,
    a duplicate key, or a stray byte."""
    data = draw(_trade_payload(kind, market))
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["set", "drop", "add", "none"]))
        key = draw(st.sampled_from(sorted(data)))
        if action == "set":
            data[key] = draw(odd_values)
        elif action == "drop":
            data.pop(key)
        elif action == "add":
            data[draw(st.sampled_from(["Z", "b", "a", "X", "nq", "ee"]))] = draw(odd_values)
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
