"""``hftfeed record-npz``: contracts -> hftbacktest rows and files; crashes, restarts, signals."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.book import OrderBook
from services.connector_feed.events import Depth, Trade
from services.connector_feed.hftbacktest.decode import HbtConverter
from services.connector_feed.hftbacktest.encode import (
    MessageRejected,
    decode_message,
    depth_rows,
    order_and_flag,
    trade_row,
)
from services.connector_feed.hftbacktest.files import DayFiles
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EVENT_DTYPE,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)
from services.connector_feed.hftbacktest.writer import NpzWriter
from tests.npz_helpers import T0, as_tuples, day_file, depth, eod_file, nan_safe, trade

EL = EXCH_EVENT | LOCAL_EVENT
ROOT = Path(__file__).parent.parent
NAN = "nan"


def test_rows_carry_exact_flags_times_and_values_and_the_eod_book(tmp_path: Path) -> None:
    writer = NpzWriter(tmp_path, flush_every_s=0.05)
    messages = [
        (False, depth("S", 1, [("100.5", "1.5"), ("100.4", "2")], [("100.6", "3")], T0 + 100, snapshot=True)),
        (False, depth("S", 2, [("100.5", "0")], [("100.7", "1")], T0 + 200)),
        (True, trade("S", 7, "100.6", "0.25", "buy", T0 + 300)),
        (True, trade("S", 8, "100.4", "0.5", "sell", T0 + 400)),
        (False, depth("S", 3, [("100.3", "4")], [], T0 + 450)),  # stamped by the venue before trade 7
    ]

    for is_trade, payload in messages:
        writer.submit(is_trade, payload)
    writer.close()

    s, d, t = T0 + 100 - 2000, T0 + 200 - 2000, T0 + 450 - 2000
    late = (DEPTH_EVENT | BUY_EVENT, t, T0 + 450, 100.3, 4.0, 3)
    assert (
        nan_safe(as_tuples(day_file(tmp_path, "S")))
        == nan_safe(
            [
                (EL | DEPTH_CLEAR_EVENT | BUY_EVENT, s, T0 + 100, math.nan, 0.0, 1),
                (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, s, T0 + 100, 100.5, 1.5, 1),
                (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, s, T0 + 100, 100.4, 2.0, 1),
                (EL | DEPTH_CLEAR_EVENT | SELL_EVENT, s, T0 + 100, math.nan, 0.0, 1),
                (EL | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, s, T0 + 100, 100.6, 3.0, 1),
                (EL | DEPTH_EVENT | BUY_EVENT, d, T0 + 200, 100.5, 0.0, 2),
                (EL | DEPTH_EVENT | SELL_EVENT, d, T0 + 200, 100.7, 1.0, 2),
                (EXCH_EVENT | late[0], *late[1:]),  # the exchange clock puts it before the trades
                (EL | TRADE_EVENT | BUY_EVENT, T0 + 300 - 1000, T0 + 300, 100.6, 0.25, 7),
                (EL | TRADE_EVENT | SELL_EVENT, T0 + 400 - 1000, T0 + 400, 100.4, 0.5, 8),
                (LOCAL_EVENT | late[0], *late[1:]),  # ...and the local clock where it was received
            ]
        )
    )
    snap = EL | DEPTH_SNAPSHOT_EVENT
    assert as_tuples(eod_file(tmp_path, "S")) == [
        (snap | BUY_EVENT, 0, 0, 100.4, 2.0, 0),
        (snap | BUY_EVENT, 0, 0, 100.3, 4.0, 0),
        (snap | SELL_EVENT, 0, 0, 100.6, 3.0, 0),
        (snap | SELL_EVENT, 0, 0, 100.7, 1.0, 0),
    ]
    assert (writer.stats.trades, writer.stats.depth, writer.stats.snapshots, writer.stats.invalid) == (
        2,
        3,
        1,
        0,
    )
    assert not (tmp_path / "stub" / ".parts" / "S_20260202").exists()


def test_local_time_never_goes_back_and_invalid_messages_are_counted(tmp_path: Path) -> None:
    writer = NpzWriter(tmp_path, flush_every_s=0.05)

    writer.submit(True, trade("S", 1, "1", "1", "buy", T0 + 500))
    writer.submit(True, trade("S", 2, "1", "1", "buy", T0 + 400))  # a clock step back on the feed host
    writer.submit(True, b'{"not": "a trade"}')
    writer.submit(False, b"\xff garbage")
    writer.close()

    rows = day_file(tmp_path, "S")
    assert rows[(rows["ev"] & LOCAL_EVENT) != 0]["local_ts"].tolist() == [T0 + 500, T0 + 500]
    assert (writer.stats.clamped_local_ts, writer.stats.invalid) == (1, 2)


def test_a_restart_on_the_same_day_appends_to_the_day_and_resumes_its_book(tmp_path: Path) -> None:
    first = NpzWriter(tmp_path, flush_every_s=0.05)
    first.submit(False, depth("S", 1, [("10", "1")], [("11", "1")], T0 + 1, snapshot=True))
    first.close()

    second = NpzWriter(tmp_path, flush_every_s=0.05)
    second.submit(False, depth("S", 2, [("9", "5")], [("11", "0"), ("12", "2")], T0 + 2))
    second.close()

    local = day_file(tmp_path, "S")
    assert local["local_ts"].tolist() == [T0 + 1] * 4 + [T0 + 2] * 3  # 2 clears + 2 levels, then 3 levels
    eod = eod_file(tmp_path, "S")
    assert list(zip(eod["px"].tolist(), eod["qty"].tolist(), strict=True)) == [
        (10.0, 1.0),
        (9.0, 5.0),
        (12.0, 2.0),
    ]


def test_chunks_a_crash_left_behind_are_assembled_at_the_next_start(tmp_path: Path) -> None:
    rows = np.array(
        [trade_row(decode_message(True, trade("S", i, "5", "1", "sell", T0 + i)), T0 + i) for i in (1, 2)],  # type: ignore[arg-type]
        dtype=EVENT_DTYPE,
    )
    files = DayFiles(tmp_path, "stub", "S", "20260202")
    files.write_chunk(1, rows[:1])
    files.write_chunk(2, rows[1:])

    writer = NpzWriter(tmp_path)
    writer.close()

    assert writer.stats.recovered == 1
    assert day_file(tmp_path, "S")["ival"].tolist() == [1, 2]
    assert len(eod_file(tmp_path, "S")) == 0
    assert not files.parts.exists()


# ---- properties ---------------------------------------------------------------------------------

BID_TICK, ASK_TICK = st.integers(1, 20), st.integers(21, 40)
LOTS = st.integers(0, 6)


@st.composite
def messages(draw: st.DrawFn) -> list[Trade | Depth]:
    out: list[Trade | Depth] = []
    for i in range(draw(st.integers(0, 25))):
        ts = T0 + 1000 * i + draw(st.integers(0, 999))
        exch = ts - draw(st.integers(0, 5000))  # venue stamps out of order now and then
        if draw(st.booleans()):
            lots, tick = draw(st.integers(1, 6)), draw(st.integers(1, 40))
            side = draw(st.sampled_from(["buy", "sell"]))
            out.append(Trade("x", "S", i + 1, str(tick / 2), str(lots / 4), side, side == "sell", exch, ts))
            continue
        snapshot = draw(st.booleans())
        bids = dict(draw(st.lists(st.tuples(BID_TICK, LOTS), max_size=5)))
        asks = dict(draw(st.lists(st.tuples(ASK_TICK, LOTS), max_size=5)))
        levels = [(str(t / 2), str(q / 4)) for t, q in bids.items() if q or not snapshot]
        ask_levels = [(str(t / 2), str(q / 4)) for t, q in asks.items() if q or not snapshot]
        out.append(Depth("x", "S", levels, ask_levels, snapshot, None if snapshot else i, i, None, exch, ts))
    return out


@given(messages())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_recorded_rows_replay_into_the_same_books_and_trades(sequence: list[Trade | Depth]) -> None:
    raw = [
        row
        for m in sequence
        for row in ([trade_row(m, m.ts_recv)] if isinstance(m, Trade) else depth_rows(m, m.ts_recv))
    ]
    rows = order_and_flag(np.array(raw, dtype=EVENT_DTYPE))
    ours, replayed = OrderBook(), OrderBook()
    converter = HbtConverter("x", "S", Decimal("0.5"), Decimal("0.25"))
    pending = [event for batch in converter.convert(rows) for event in batch]
    sent_trades: list[tuple[object, ...]] = []
    got_trades: list[tuple[object, ...]] = []

    i = 0
    while i < len(sequence):  # everything received at one local time, then compare
        ts = sequence[i].ts_recv
        while i < len(sequence) and sequence[i].ts_recv == ts:
            m = sequence[i]
            if isinstance(m, Trade):
                sent_trades.append((m.trade_id, Decimal(m.price), Decimal(m.qty), m.side, m.ts_event))
            elif m.is_snapshot:
                ours.reset(m.bids, m.asks, m.last_update_id)
            else:
                ours.apply(m.bids, m.asks, m.last_update_id)
            i += 1
        while pending and pending[0].ts_recv <= ts:  # an empty delta has no rows: no batch either
            event = pending.pop(0)
            if isinstance(event, Trade):
                got_trades.append(
                    (event.trade_id, Decimal(event.price), Decimal(event.qty), event.side, event.ts_event)
                )
            else:
                (replayed.reset if event.is_snapshot else replayed.apply)(
                    event.bids, event.asks, event.last_update_id
                )
        assert [(Decimal(p), Decimal(q)) for p, q in replayed.bids()] == [
            (Decimal(p), Decimal(q)) for p, q in ours.bids()
        ]
        assert [(Decimal(p), Decimal(q)) for p, q in replayed.asks()] == [
            (Decimal(p), Decimal(q)) for p, q in ours.asks()
        ]
    assert got_trades == sent_trades
    validate_order(rows)


def validate_order(rows: np.ndarray) -> None:
    """hftbacktest's ``validate_event_order``: each clock in order on its own rows."""
    exch = rows[(rows["ev"] & EXCH_EVENT) != 0]["exch_ts"]
    local = rows[(rows["ev"] & LOCAL_EVENT) != 0]["local_ts"]
    assert (np.diff(exch) >= 0).all() and (np.diff(local) >= 0).all()


@given(st.booleans(), st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
@settings(max_examples=300)
def test_any_payload_is_an_event_or_our_rejection(is_trade: bool, payload: bytes) -> None:
    try:
        event = decode_message(is_trade, payload)
    except MessageRejected:
        return
    assert isinstance(event, Trade if is_trade else Depth)
