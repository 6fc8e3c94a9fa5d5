"""hftbacktest rows -> our events: exact decimals, batches, snapshots, hftbacktest's own book."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import DepthUpdate, TradeTick
from services.common.book import OrderBook
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.hftbacktest.decode import HbtConverter, steps
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_BBO_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EVENT_DTYPE,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    HbtDataError,
    as_rows,
    load_rows,
    rust_round,
)

EL = EXCH_EVENT | LOCAL_EVENT
BID, ASK = EL | DEPTH_EVENT | BUY_EVENT, EL | DEPTH_EVENT | SELL_EVENT
T0 = 1_770_000_000_000_000_000


def rows(*items: tuple[int, int, int, float, float] | tuple[int, int, int, float, float, int]) -> np.ndarray:
    out = np.zeros(len(items), dtype=EVENT_DTYPE)
    for i, item in enumerate(items):
        ev, exch, local, px, qty, *ival = item
        out[i] = (ev, exch, local, px, qty, 0, ival[0] if ival else 0, 0.0)
    return out


def converter(tick: str = "0.1", lot: str = "0.001") -> HbtConverter:
    return HbtConverter("binance_usdm", "BTCUSDT-PERP", Decimal(tick), Decimal(lot))


def flat(conv: HbtConverter, data: np.ndarray) -> list[Event]:
    return [event for batch in conv.convert(data) for event in batch]


def test_depth_rows_of_one_timestamp_become_one_message_with_exact_decimals() -> None:
    conv = converter()
    data = rows(
        (BID, T0, T0 + 5, 61659.700000000004, 1.2340000000000002),
        (BID, T0, T0 + 5, 61659.6, 0.5),
        (ASK, T0, T0 + 5, 61659.8, 2.0),
        (ASK, T0 + 1, T0 + 6, 61659.8, 0.0),
    )

    first, second = conv.convert(data)

    assert first == [
        Depth(
            "binance_usdm",
            "BTCUSDT-PERP",
            [("61659.7", "1.234"), ("61659.6", "0.500")],
            [("61659.8", "2.000")],
            False,
            1,
            1,
            None,
            T0,
            T0 + 5,
        )
    ]
    update = second[0]
    assert isinstance(update, Depth)
    assert (update.asks, update.bids, update.first_update_id, update.prev_last_update_id) == (
        [("61659.8", "0")],
        [],
        2,
        1,
    )
    assert conv.stats.off_tick_prices == conv.stats.off_lot_qtys == 0


def test_trades_get_the_aggressor_side_and_ids_from_ival_or_their_position() -> None:
    conv = converter()
    data = rows(
        (EL | TRADE_EVENT | BUY_EVENT, T0, T0 + 10, 100.1, 0.25, 0),
        (EL | TRADE_EVENT | SELL_EVENT, T0 + 1, T0 + 11, 100.0, 0.5, 987),
    )

    buy, sell = flat(conv, data)

    assert buy == Trade("binance_usdm", "BTCUSDT-PERP", 1, "100.1", "0.250", "buy", False, T0, T0 + 10)
    assert sell == Trade("binance_usdm", "BTCUSDT-PERP", 987, "100.0", "0.500", "sell", True, T0 + 1, T0 + 11)
    assert TradeTick.model_validate_json(sell.wire()).to_json() == sell.wire()


def test_clear_and_snapshot_rows_publish_the_whole_book_as_a_snapshot() -> None:
    conv = converter()
    book = rows((BID, T0, T0, 99.0, 1.0), (BID, T0, T0, 90.0, 1.0), (ASK, T0, T0, 101.0, 1.0))
    resync = rows(
        (EL | DEPTH_CLEAR_EVENT | BUY_EVENT, T0 + 5, T0 + 9, 95.0, 0.0),  # clears bids >= 95 only
        (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, T0 + 5, T0 + 9, 98.0, 3.0),
        (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, T0 + 5, T0 + 9, 95.0, 2.0),
    )
    flat(conv, book)

    (snapshot,) = flat(conv, resync)

    assert isinstance(snapshot, Depth) and snapshot.is_snapshot
    assert snapshot.bids == [("98.0", "3.000"), ("95.0", "2.000"), ("90.0", "1.000")]  # 90 survives
    assert snapshot.asks == [("101.0", "1.000")]
    assert DepthUpdate.model_validate_json(snapshot.wire()).is_snapshot
    assert conv.stats.snapshots == 1


def test_a_crossing_level_hides_the_other_side_as_hftbacktest_does_and_it_comes_back() -> None:
    conv = converter("1", "1")
    flat(conv, rows((BID, T0, T0, 99.0, 1.0), (ASK, T0, T0, 101.0, 1.0), (ASK, T0, T0, 102.0, 1.0)))

    (cross,) = flat(conv, rows((BID, T0 + 1, T0 + 1, 101.0, 5.0)))
    (uncross,) = flat(conv, rows((BID, T0 + 2, T0 + 2, 101.0, 0.0)))

    assert isinstance(cross, Depth) and isinstance(uncross, Depth)
    assert (cross.bids, cross.asks) == ([("101", "5")], [("101", "0")])  # 101 ask hidden, not deleted
    assert uncross.bids == [("101", "0")]
    assert conv.depth.visible_asks() == [(102, 1.0)]  # hftbacktest never looks back below 102


def test_rows_of_other_views_and_kinds_are_skipped_and_counted() -> None:
    conv = converter()
    data = rows(
        (EXCH_EVENT | DEPTH_EVENT | BUY_EVENT, T0, T0, 1.0, 1.0),  # the EXCH-only copy of a split row
        (DEPTH_EVENT | BUY_EVENT, T0, T0, 1.0, 1.0),  # no flag: hftbacktest ignores it
        (EL | DEPTH_BBO_EVENT | BUY_EVENT, T0, T0, 1.0, 1.0),
        (EL | 103, T0, T0, 1.0, 1.0),  # a custom kind (binancefutures opt='t')
        (EL | TRADE_EVENT, T0, T0, 1.0, 1.0),  # a trade without a side
        (EL | TRADE_EVENT | BUY_EVENT, T0, T0, 1.0, 0.0001),  # under half a lot
        (BID, T0, T0, math.nan, 1.0),
        (BID, T0, T0, 100.03, 1.0),  # a third of a tick off the grid: published as 100.0, counted
    )

    events = flat(conv, data)

    assert events == [
        Depth("binance_usdm", "BTCUSDT-PERP", [("100.0", "1.000")], [], False, 1, 1, None, T0, T0)
    ]
    assert conv.stats.skipped == {
        "bbo_rows": 1,
        "kind_103_rows": 1,
        "rows_without_side": 1,
        "trades_without_qty": 1,
        "non_positive_or_nan_price": 1,
    }
    assert (conv.stats.exch_only_rows, conv.stats.unflagged_rows, conv.stats.off_tick_prices) == (1, 1, 1)


def test_an_initial_snapshot_is_published_before_the_first_batch_at_its_time() -> None:
    conv = converter()
    conv.initial_snapshot(
        rows(
            (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 0, 0, 99.9, 1.0),
            (EL | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 0, 0, 100.1, 2.0),
        )
    )

    snapshot, trade = flat(conv, rows((EL | TRADE_EVENT | SELL_EVENT, T0, T0 + 3, 99.9, 0.1)))

    assert isinstance(snapshot, Depth) and snapshot.is_snapshot
    assert (snapshot.bids, snapshot.asks, snapshot.ts_recv) == (
        [("99.9", "1.000")],
        [("100.1", "2.000")],
        T0 + 3,
    )
    assert isinstance(trade, Trade) and trade.price == "99.9"


def test_rust_rounding_is_half_away_from_zero_and_saturating() -> None:
    assert [rust_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994)] == [1, 2, 3, -1, -3, 0]
    assert rust_round(math.nan) == 0
    assert rust_round(1e300) == 2**63 - 1 and rust_round(-math.inf) == -(2**63)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=40))
@settings(max_examples=200)
def test_vectorised_rounding_equals_the_scalar_one(values: list[float]) -> None:
    units, _ = steps(np.array(values, dtype=np.float64), 1.0)

    assert units.tolist() == [rust_round(v) for v in values]


def test_files_that_are_not_event_arrays_are_rejected_with_our_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong_key.npz", events=np.zeros(2, dtype=EVENT_DTYPE))
    np.savez(tmp_path / "wrong_dtype.npz", data=np.zeros(2, dtype=np.float64))
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(
        tmp_path / "renamed.npz",
        data=np.zeros(2, dtype=EVENT_DTYPE).view([(f"f{i}", EVENT_DTYPE[i]) for i in range(8)]),
    )

    for name in ("wrong_key", "wrong_dtype", "garbage"):
        with pytest.raises(HbtDataError, match=name):
            load_rows(tmp_path / f"{name}.npz")
    assert load_rows(tmp_path / "renamed.npz").dtype == EVENT_DTYPE  # other field names: hftbacktest warns


# ---- properties ---------------------------------------------------------------------------------

KINDS = st.sampled_from(
    [DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT, DEPTH_BBO_EVENT, 0, 7, 103]
)
BITS = st.sampled_from([0, EXCH_EVENT, LOCAL_EVENT, EL])
SIDES = st.sampled_from([0, BUY_EVENT, SELL_EVENT, BUY_EVENT | SELL_EVENT])
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)
TS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ROW = st.tuples(
    st.builds(lambda k, b, s: k | b | s, KINDS, BITS, SIDES),
    TS,
    TS,
    ANY_FLOAT,
    ANY_FLOAT,
    st.integers(-(2**63), 2**63 - 1),
)


@given(st.lists(ROW, max_size=30), st.sampled_from(["0.1", "1", "0.00000001", "25"]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_rows_never_raise_and_every_event_is_a_valid_contract(
    items: list[tuple[int, int, int, float, float, int]], tick: str
) -> None:
    conv = converter(tick, "0.001")

    events = flat(conv, rows(*items))

    for event in events:
        model = TradeTick if isinstance(event, Trade) else DepthUpdate
        assert model.model_validate_json(event.wire()).to_json() == event.wire()


LEVEL_TICKS = st.integers(min_value=1, max_value=40)
LEVEL_ROW = st.tuples(st.sampled_from([BID, ASK]), LEVEL_TICKS, st.integers(min_value=0, max_value=5))


@given(st.lists(st.lists(LEVEL_ROW, min_size=1, max_size=6), max_size=25))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_our_book_after_every_message_equals_hftbacktests_visible_book(
    batches: list[list[tuple[int, int, int]]],
) -> None:
    conv, book = converter("0.5", "0.25"), OrderBook()
    data = rows(
        *((ev, T0 + i, T0 + i, t * 0.5, q * 0.25) for i, batch in enumerate(batches) for ev, t, q in batch)
    )

    for batch in conv.convert(data):
        for event in batch:
            assert isinstance(event, Depth)
            book.apply(event.bids, event.asks, event.last_update_id)
        expected_bids = [(str(Decimal(t) * Decimal("0.5")), q) for t, q in conv.depth.visible_bids()]
        expected_asks = [(str(Decimal(t) * Decimal("0.5")), q) for t, q in conv.depth.visible_asks()]
        assert [(p, float(q)) for p, q in book.bids()] == [(p, q) for p, q in expected_bids]
        assert [(p, float(q)) for p, q in book.asks()] == [(p, q) for p, q in expected_asks]


def test_as_rows_refuses_what_is_not_an_event_array() -> None:
    with pytest.raises(HbtDataError):
        as_rows([1, 2], "list")
    with pytest.raises(HbtDataError):
        as_rows(np.zeros((2, 2), dtype=EVENT_DTYPE), "2-d")
