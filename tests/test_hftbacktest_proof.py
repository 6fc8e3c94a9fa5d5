"""The proofs, against hftbacktest 2.4.4 itself (in its own virtualenv, see ``hbt_python``).

In: a Binance USD-M recording (collector layout) -> hftbacktest's ``binancefutures.convert`` ->
our replay. After every wake-up of hftbacktest's backtest (one per local timestamp: every depth
message and every trade), its local book (``HashMapMarketDepth``, every level) equals ours, and its
``last_trades`` are our trades. Out: the same messages on NATS -> ``record-npz`` -> a backtest
over the files shows our book's best bid/ask and quantities (and whole book) and our trades at
every wake-up, and hftbacktest's own ``create_last_snapshot`` equals our ``_eod.npz``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nats.aio.client import Client

from schemas import subjects
from services.cli.record_npz import RecordNpzSettings, run_record_npz
from services.common.book import OrderBook
from services.common.bus import settled
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.hftbacktest import format as hbt_format
from services.connector_feed.hftbacktest.decode import HbtConverter
from services.connector_feed.hftbacktest.format import BUY_EVENT, load_rows, rust_round
from tests.hbt_data import LOT, TICK, collector_recording
from tests.helpers import eventually

ROOT = Path(__file__).parent.parent
DRIVER = ROOT / "bench" / "hftbacktest_driver.py"
pytestmark = pytest.mark.timeout(900)  # the first test may create hftbacktest's virtualenv

State = dict[str, Any]


def drive(python: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(python), str(DRIVER), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def backtest(python: Path, tmp_path: Path, *files: Path, snapshot: Path | None = None) -> list[State]:
    out = tmp_path / "states.json"
    extra = ["--snapshot", str(snapshot)] if snapshot else []
    drive(python, "replay", str(out), TICK, LOT, *map(str, files), *extra)
    states: list[State] = json.loads(out.read_text())
    return states


def in_ticks(levels: Sequence[Sequence[str]]) -> list[list[int]]:
    return [[int(Decimal(p) / Decimal(TICK)), int(Decimal(q) / Decimal(LOT))] for p, q in levels]


def hbt_levels(levels: list[list[float]]) -> list[list[int]]:
    return [[int(t), rust_round(q / float(LOT))] for t, q in levels]


def compare(states: list[State], events: list[Event]) -> tuple[int, int]:
    """Walk hftbacktest's wake-ups and our events together; assert books and trades at each one."""
    book, i, depth_messages, trades = OrderBook(), 0, 0, 0
    for k, state in enumerate(states):
        final = state["rc"] != 2  # the last rows come with "end of data" and the clock stays
        ours: list[list[int]] = []
        while i < len(events) and (final or events[i].ts_recv <= state["ts"]):
            event = events[i]
            if isinstance(event, Depth):
                (book.reset if event.is_snapshot else book.apply)(
                    event.bids, event.asks, event.last_update_id
                )
                depth_messages += 1
            else:
                side = BUY_EVENT if event.side == "buy" else hbt_format.SELL_EVENT
                ours.append([side, event.ts_event, event.ts_recv, *in_ticks([(event.price, event.qty)])[0]])
            i += 1
        theirs = [
            [
                ev & (BUY_EVENT | hbt_format.SELL_EVENT),
                exch,
                local,
                round(px / float(TICK)),
                rust_round(qty / float(LOT)),
            ]
            for ev, exch, local, px, qty, _ in state["trades"]
        ]
        where = f"wake-up {k} (local_ts {state['ts']})"
        assert theirs == ours, where
        assert hbt_levels(state["bids"]) == in_ticks(book.bids()), where
        assert hbt_levels(state["asks"]) == in_ticks(book.asks()), where
        trades += len(ours)
    assert i == len(events)
    return depth_messages, trades


def test_our_format_constants_are_hftbacktests(hbt_python: Path) -> None:
    theirs = drive(hbt_python, "constants")

    ours = hbt_format.EVENT_DTYPE
    assert ours.fields is not None
    assert theirs["itemsize"] == ours.itemsize == 64
    assert theirs["dtype"] == [[n, str(ours.fields[n][0]), ours.fields[n][1]] for n in ours.names or ()]
    assert theirs["flags"] == {name: getattr(hbt_format, name) for name in theirs["flags"]}


def test_a_converted_recording_replays_into_hftbacktests_book_at_every_depth_message(
    hbt_python: Path, tmp_path: Path
) -> None:
    recording = collector_recording(tmp_path)
    converted = tmp_path / "btcusdt_20260202.npz"
    drive(hbt_python, "convert", str(recording), str(converted))
    converter = HbtConverter("binance_usdm", "BTCUSDT-PERP", Decimal(TICK), Decimal(LOT))

    events = [event for batch in converter.convert(load_rows(converted)) for event in batch]
    states = backtest(hbt_python, tmp_path, converted)
    depth_messages, trades = compare(states, events)

    stats = converter.stats
    assert depth_messages == stats.depth_messages > 200 and trades == stats.trades > 100
    assert stats.snapshots == 2 and stats.exch_only_rows > 0  # both resyncs; split rows were skipped
    assert (stats.off_tick_prices, stats.off_lot_qtys, stats.skipped) == (0, 0, {})
    assert len(states) == len({e.ts_recv for e in events})  # one wake-up per local timestamp


async def test_record_npz_files_backtest_to_the_book_and_trades_we_published(
    hbt_python: Path, nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    recording = collector_recording(tmp_path, n_diffs=200, seed=11)
    converted = tmp_path / "source.npz"
    drive(hbt_python, "convert", str(recording), str(converted))
    converter = HbtConverter("binance_usdm", unique, Decimal(TICK), Decimal(LOT))
    events = [event for batch in converter.convert(load_rows(converted)) for event in batch]
    folder = tmp_path / "npz"
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_record_npz(
            RecordNpzSettings(nats_url=nats_url, symbols=[unique], npz_dir=folder, npz_flush_s=0.2), stop
        )
    )
    await asyncio.sleep(0.5)

    for event in events:
        subject = subjects.trades(unique) if isinstance(event, Trade) else subjects.depth(unique)
        await nc.publish(subject, event.wire())
    await settled(nc)
    await eventually(lambda: sum(len(np.load(p)) for p in folder.glob("*/.parts/*/*.npy")) > 0, 10)
    await asyncio.sleep(0.5)
    stop.set()
    assert await asyncio.wait_for(task, 60) == 0

    day = folder / "binance_usdm" / f"{unique}_20260202.npz"
    eod = folder / "binance_usdm" / f"{unique}_20260202_eod.npz"
    states = backtest(hbt_python, tmp_path, day)
    depth_messages, trades = compare(states, events)
    assert depth_messages == converter.stats.depth_messages and trades == converter.stats.trades > 50
    best = states[-1]
    assert best["best_bid_tick"] == in_ticks(OrderBook_from(events).bids(1))[0][0]
    theirs_eod = tmp_path / "their_eod.npz"
    drive(hbt_python, "snapshot", str(theirs_eod), TICK, LOT, str(day))
    mine, theirs = load_rows(eod), load_rows(theirs_eod)

    def levels(rows: np.ndarray) -> list[tuple[int, int, float]]:  # theirs: px = ticks * tick_size
        return [(ev, round(px / float(TICK)), qty) for ev, px, qty in rows[["ev", "px", "qty"]].tolist()]

    assert len(mine) > 100 and levels(mine) == levels(theirs)


def OrderBook_from(events: list[Event]) -> OrderBook:
    book = OrderBook()
    for event in events:
        if isinstance(event, Depth):
            (book.reset if event.is_snapshot else book.apply)(event.bids, event.asks, event.last_update_id)
    return book
