"""Backpressure, never silent loss: a burst many times the queue is read from the socket only as
fast as it is published, and the one loss left (a message NATS will not take) is counted,
announced and, for depth, repaired with a snapshot of the feed's book."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from nats.aio.client import Client

from schemas import DepthUpdate, Status, subjects
from services.common.bus import Bus
from services.common.natsserver import NatsServer
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.events import Depth
from services.connector_feed.service import feed_health
from services.connector_feed.stream import HFTConnectorStream
from tests.fake_binance import STALE_DIFFS, FakeBinance, book_scenario, spot_trade
from tests.fakes import ScriptedConnector
from tests.helpers import collect, eventually, native, running_stream

QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)
MAX_QUEUE = 64
BURST = 20_000  # ~300 times the queue
TS = 1_770_000_000_000


async def test_a_burst_many_times_the_queue_is_published_whole_in_order(
    nats_url: str, nc: Client, unique: str
) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", STALE_DIFFS + 1 + BURST // 100, seed=3, levels=20)
    trades = await collect(nc, subjects.trades(unique))
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        settings = BinanceSettings(
            symbols=unique, binance_ws_url=venue.ws_url, binance_rest_url=venue.rest_url
        )
        connector = BinanceConnector(settings, QUICK)
        async with running_stream(connector, nats_url, [unique], QUICK, max_queue=MAX_QUEUE) as stream:
            trade_stream, depth_stream = f"{unique.lower()}@trade", f"{unique.lower()}@depth@100ms"
            await venue.wait_for_subscribers([trade_stream, depth_stream])
            for diff in diffs[: STALE_DIFFS + 1]:
                await venue.send(depth_stream, diff)
            await eventually(lambda: bool(depth))  # the book is synced
            # NATS slower than the venue: nats-py's buffer takes 4 kB before a publish must wait for
            # its flush (as with ``nats.connect(pending_size=4096)``). The feed publishes inline
            # while it can; then the queue fills and the socket must be paused.
            stream.bus.nc._max_pending_size = 4096
            later = iter(diffs[STALE_DIFFS + 1 :])
            # Act: the burst, back to back, with a diff after every 100th trade.
            for i in range(BURST):
                await venue.send(
                    trade_stream, spot_trade(unique, i + 1, "100.5", "0.001", i % 2 == 0, TS + i)
                )
                if i % 100 == 99:
                    await venue.send(depth_stream, next(later))
            await eventually(lambda: len(trades) >= BURST, timeout_s=60)
            report = feed_health(stream, stream.bus, 10.0, stream.telemetry).report()
            pauses = connector.supervisor.pauses

    ids = [orjson.loads(m.data)["trade_id"] for m in trades]
    assert ids == list(range(1, BURST + 1))  # every trade, once, in order
    seqs = [orjson.loads(m.data)["seq"] for m in trades]
    assert seqs == list(range(1, BURST + 1))
    updates = [DepthUpdate.model_validate_json(m.data) for m in depth]
    assert sum(u.is_snapshot for u in updates) == 1  # no resync: the book never lost a diff
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    assert report["dropped"]["trades"] == report["dropped"]["depth"] == 0 and report["status"] == "ok"
    assert pauses > 0  # the socket was paused while the feed was full: the kernel held the burst
    assert report["connector"]["connector_health"]["fast_path_misses"] == 0  # every trade took it
    assert report["connector"]["connector_health"]["fast_path_depth_misses"] == 0  # every diff too


def _depth(symbol: str, last: int, bids: list[tuple[str, str]], snapshot: bool = False) -> Depth:
    return Depth("stub", symbol, bids, [("200", "1")], snapshot, None if snapshot else last, last, None, 1, 2)


async def test_a_depth_message_nats_will_not_take_is_counted_announced_and_repaired(
    tmp_path: Path, unique: str
) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")  # a big delta (removals only) will not go; the book is small
    with NatsServer(config=config) as server:
        bus = await Bus.connect(server.url, "test-feed")
        listener = await Bus.connect(server.url, "test-listener")
        depth = await collect(listener.nc, subjects.depth(unique))
        statuses = await collect(listener.nc, subjects.status(unique))
        stream = HFTConnectorStream(native(ScriptedConnector(), [unique], QUICK), bus, 1000)
        removals = [(f"{150 + i / 1000:.3f}", "0") for i in range(400)]  # > 4096 bytes, unknown levels

        await stream.deliver(
            [
                _depth(unique, 1, [("100", "1"), ("99", "2")], snapshot=True),
                _depth(unique, 2, [("100", "3")]),
                _depth(unique, 3, removals),  # NATS refuses it
                _depth(unique, 4, [("98", "5")]),
            ]
        )
        await eventually(lambda: len(depth) >= 3 and len(statuses) >= 1)
        await asyncio.sleep(0.1)  # nothing else may follow
        await bus.drain()
        await listener.drain()

    updates = [DepthUpdate.model_validate_json(m.data) for m in depth]
    assert [(u.seq, u.is_snapshot) for u in updates] == [(1, True), (2, False), (5, True)]
    repaired = updates[-1]  # every accepted delta, the lost one and the one after it included
    assert [(str(p), str(q)) for p, q in repaired.bids] == [("100", "3"), ("99", "2"), ("98", "5")]
    assert repaired.last_update_id == 4
    status = Status.model_validate_json(statuses[0].data)
    assert status.state == "live" and "lost" in status.reason
    assert stream.dropped.by_reason == {"publish_failed": 1, "superseded_by_snapshot": 1}
    assert stream.dropped.depth == 2 and stream.dropped.resyncs == {unique: 1}


async def test_a_repair_snapshot_nats_will_not_take_ends_in_resyncing_not_a_loop(
    tmp_path: Path, unique: str
) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 4096\n")
    with NatsServer(config=config) as server:
        bus = await Bus.connect(server.url, "test-feed")
        listener = await Bus.connect(server.url, "test-listener")
        statuses = await collect(listener.nc, subjects.status(unique))
        stream = HFTConnectorStream(native(ScriptedConnector(), [unique], QUICK), bus, 1000)
        big_book = [(f"{100 + i / 100:.2f}", "1") for i in range(300)]  # the book itself is too big

        await stream.deliver([_depth(unique, 1, big_book, snapshot=True)])
        await eventually(lambda: len(statuses) >= 2)
        await asyncio.sleep(0.1)
        await bus.drain()
        await listener.drain()

    states = [Status.model_validate_json(m.data).state for m in statuses]
    assert states == ["live", "resyncing"]  # tried once to repair, then says so: no loop
    assert stream.dropped.by_reason == {"publish_failed": 2}
