"""``hftfeed record-npz``: contracts -> hftbacktest rows and files; crashes, restarts, signals."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from schemas import subjects
from services.cli.record_npz import RecordNpzSettings, run_record_npz
from services.common.book import OrderBook
from services.common.reconnect import ReconnectPolicy
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
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubbedConnector
from tests.helpers import collect, eventually, running_stream
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


# ---- over NATS ------------------------------------------------------------------------------------


async def test_record_npz_writes_what_was_published_on_the_bus(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    settings = RecordNpzSettings(nats_url=nats_url, symbols=[unique], npz_dir=tmp_path, npz_flush_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(run_record_npz(settings, stop))
    published = [depth(unique, 1, [("99", "1")], [("101", "2")], T0 + 1, snapshot=True)]
    published += [
        trade(unique, i, "100", "0.5", "buy" if i % 2 else "sell", T0 + 10 + i) for i in range(1, 51)
    ]
    await asyncio.sleep(0.5)  # the recorder subscribes; a NATS subject has no history

    await nc.publish(subjects.depth(unique), published[0])
    for payload in published[1:]:
        await nc.publish(subjects.trades(unique), payload)
    await nc.flush()
    await eventually(lambda: any(tmp_path.glob(f"stub/.parts/{unique}_*/*.npy")))
    stop.set()

    assert await asyncio.wait_for(task, 30) == 0
    rows = day_file(tmp_path, unique)
    trades = rows[(rows["ev"] & 0xFF) == TRADE_EVENT]
    assert trades["ival"].tolist() == list(range(1, 51))
    assert ((trades["ev"] & BUY_EVENT) != 0).tolist() == [i % 2 == 1 for i in range(1, 51)]
    assert (trades["local_ts"] - trades["exch_ts"]).tolist() == [1000] * 50
    assert as_tuples(eod_file(tmp_path, unique)) == [
        (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 0, 0, 99.0, 1.0, 0),
        (EL | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 0, 0, 101.0, 2.0, 0),
    ]


async def test_the_stub_feed_records_into_hftbacktest_files(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    settings = RecordNpzSettings(nats_url=nats_url, symbols=[unique], npz_dir=tmp_path, npz_flush_s=0.05)
    trades_seen = await collect(nc, subjects.trades(unique))
    depth_seen = await collect(nc, subjects.depth(unique))
    stop = asyncio.Event()
    task = asyncio.create_task(run_record_npz(settings, stop))
    await asyncio.sleep(0.5)
    stub = StubbedConnector(
        FeedSettings(symbols=unique, stub_trades_per_s=200, stub_depth_per_s=50, stub_seed=1)
    )

    async with running_stream(stub, nats_url, [unique], ReconnectPolicy()):
        await eventually(lambda: len(trades_seen) >= 60 and len(depth_seen) >= 10)
    await nc.flush()
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0

    day = next((tmp_path / "stub").glob(f"{unique}_*[0-9].npz")).stem.rsplit("_", 1)[1]
    rows = day_file(tmp_path, unique, day)
    local = rows[(rows["ev"] & LOCAL_EVENT) != 0]
    kinds = local["ev"] & 0xFF
    assert (kinds == TRADE_EVENT).sum() == len(trades_seen)
    assert (kinds == DEPTH_CLEAR_EVENT).sum() == 2 * len(depth_seen)  # every stub message is a snapshot
    validate_order(rows)


def _recorder(nats_url: str, symbol: str, folder: Path, flush_s: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "SYMBOLS": symbol,
        "NPZ_DIR": str(folder),
        "NPZ_FLUSH_S": flush_s,
        "LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "record-npz"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def leftover_chunks(folder: Path) -> list[Path]:
    return list(folder.glob("stub/.parts/*"))


async def _started(process: subprocess.Popen[bytes]) -> None:
    """Wait for the recorder's ``service_started`` line: it logs it once subscribed and flushed."""
    assert process.stdout is not None
    stdout = process.stdout

    def read_until_started() -> bytes:
        seen = b""
        for line in iter(stdout.readline, b""):
            seen += line
            if b"service_started" in line:
                return seen
        return seen

    seen = await asyncio.wait_for(asyncio.to_thread(read_until_started), 60)
    assert b"service_started" in seen, seen
    # Keep draining its output so the pipe never fills and blocks it.
    asyncio.get_running_loop().run_in_executor(None, stdout.read)


async def test_sigterm_mid_stream_leaves_complete_files(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    process = _recorder(nats_url, unique, tmp_path, "0.1")
    await _started(process)
    sent = 0

    async def publish_until(condition: object) -> None:
        nonlocal sent
        while not condition():  # type: ignore[operator]
            sent += 1
            await nc.publish(subjects.trades(unique), trade(unique, sent, "1.5", "2", "buy", T0 + sent))
            if sent % 50 == 0:
                await nc.flush()
                await asyncio.sleep(0.01)

    await publish_until(lambda: sent >= 300)
    process.send_signal(signal.SIGTERM)
    await publish_until(lambda: process.poll() is not None or sent >= 100_000)
    code = await asyncio.to_thread(process.wait, 30)

    assert code == 0
    ids = day_file(tmp_path, unique)["ival"].tolist()
    assert len(ids) >= 300 and ids == list(range(1, len(ids) + 1))  # no hole, no duplicate
    assert len(eod_file(tmp_path, unique)) == 0
    assert not leftover_chunks(tmp_path)


async def test_a_killed_recorder_loses_at_most_the_last_flush(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    process = _recorder(nats_url, unique, tmp_path, "0.1")
    await _started(process)
    for i in range(1, 201):
        await nc.publish(subjects.trades(unique), trade(unique, i, "3", "1", "sell", T0 + i))
    await nc.flush()

    def chunked() -> int:
        return sum(len(np.load(p)) for p in tmp_path.glob(f"stub/.parts/{unique}_*/*.npy"))

    await eventually(lambda: chunked() == 200)
    process.kill()
    await asyncio.to_thread(process.wait, 10)
    NpzWriter(tmp_path).close()  # the next start

    assert day_file(tmp_path, unique)["ival"].tolist() == list(range(1, 201))


@pytest.mark.parametrize("variable", ["NPZ_FLUSH_S", "NPZ_MAX_QUEUE"])
def test_bad_record_npz_settings_stop_at_start_naming_the_variable(variable: str) -> None:
    env = {**os.environ, variable: "-1", "NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "record-npz"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert variable.encode() in done.stderr
