"""Binance connections that survive production, against the fake Binance on loopback."""

from __future__ import annotations

import itertools

from nats.aio.client import Client

from schemas import Status, subjects
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.service import feed_health
from tests.binance_helpers import feed, snapshots, states
from tests.fake_binance import FakeBinance, book_scenario, spot_trade
from tests.helpers import collect, eventually

TS = 1_770_000_000_000


async def test_a_dropped_connection_reconnects_and_resyncs_every_book(
    nats_url: str, nc: Client, unique: str
) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", 40, seed=4, levels=20)
    statuses = await collect(nc, subjects.status(unique))
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue, feed(venue, nats_url, unique) as stream:
        venue.load_snapshot(snapshot)
        name = f"{unique.lower()}@depth@100ms"
        await venue.wait_for_subscribers([name])
        for diff in diffs[:10]:
            await venue.send(name, diff)
        await eventually(lambda: snapshots(depth) == 1)

        await venue.drop_connections()
        await venue.wait_for_connections(2)
        await venue.wait_for_subscribers([name])
        venue.set_snapshot(unique, diffs[12]["u"], snapshot.bids, snapshot.asks)  # the venue moved on
        for diff in diffs[10:]:
            await venue.send(name, diff)
        await eventually(lambda: snapshots(depth) == 2)
        await eventually(lambda: states(statuses)[-1:] == ["live"])

    assert stream.connector.counters().reconnects == 1
    assert len(venue.snapshot_requests) == 2  # every book is rebuilt after a reconnect
    seen = states(statuses)
    assert seen[seen.index("reconnecting") :] == ["reconnecting", "resyncing", "live"]


async def test_a_connection_that_drops_at_once_backs_off_instead_of_storming(
    nats_url: str, unique: str
) -> None:
    policy = ReconnectPolicy(initial_s=0.05, max_s=0.8, max_attempts=0, reset_after_s=30)
    async with FakeBinance("spot") as venue, feed(venue, nats_url, unique, policy) as stream:
        for count in range(1, 6):
            await venue.wait_for_connections(count, timeout=5)
            await venue.drop_connections()
        opened = [c.opened_at for c in venue.connections[:5]]

    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert gaps == sorted(gaps), gaps
    assert all(gap >= policy.delay(attempt) for attempt, gap in enumerate(gaps, start=1)), (
        gaps
    )  # 0.05, 0.1, 0.2, 0.4
    assert stream.connector.reconnection_attempts() >= 4  # never reset: no connection lived 30 s


async def test_a_silent_depth_stream_is_stale_then_live_again(nats_url: str, nc: Client, unique: str) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", 20, seed=8, levels=20)
    statuses = await collect(nc, subjects.status(unique))
    async with (
        FakeBinance("spot") as venue,
        feed(venue, nats_url, unique, binance_stale_depth_s=0.3) as stream,
    ):
        venue.load_snapshot(snapshot)
        name = f"{unique.lower()}@depth@100ms"
        await venue.wait_for_subscribers([name])
        for diff in diffs[:10]:
            await venue.send(name, diff)
        await eventually(lambda: "live" in states(statuses))
        await eventually(lambda: states(statuses)[-1:] == ["stale"])  # silence > 0.3 s
        stale_health = feed_health(stream, stream.bus, 60.0, stream.telemetry).report()
        await venue.send(name, diffs[10])
        await eventually(lambda: states(statuses)[-1:] == ["live"])
        live_health = feed_health(stream, stream.bus, 60.0, stream.telemetry).report()

    stale = Status.model_validate_json(statuses[states(statuses).index("stale")].data)
    assert (stale.stream, stale.symbol, stale.exchange) == ("depth", unique, "binance")
    assert stale_health["status"] == "degraded"
    assert stale_health["connector"]["connector_health"]["symbols"] == {unique: "stale"}
    assert live_health["connector"]["connector_health"]["symbols"] == {unique: "live"}


async def test_429_with_retry_after_delays_the_next_snapshot(nats_url: str, nc: Client, unique: str) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", 10, seed=9, levels=20)
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue, feed(venue, nats_url, unique):
        venue.load_snapshot(snapshot)
        venue.reject_next(status=429, retry_after=1)
        name = f"{unique.lower()}@depth@100ms"
        await venue.wait_for_subscribers([name])
        for diff in diffs:
            await venue.send(name, diff)
        await eventually(lambda: snapshots(depth) == 1)

    first, second = venue.snapshot_requests[:2]
    assert second.at - first.at >= 1.0


async def test_more_symbols_than_one_connection_holds_spread_over_several(
    nats_url: str, nc: Client, unique: str
) -> None:
    symbols = [f"{unique}{i}" for i in range(5)]  # 10 streams, 4 per connection -> 3 connections
    received = await collect(nc, "md.*.trades")
    async with (
        FakeBinance("spot", max_streams=4) as venue,
        feed(venue, nats_url, ",".join(symbols), binance_max_streams_per_connection=4),
    ):
        await venue.wait_for_subscribers([f"{s.lower()}@trade" for s in symbols])
        for i, symbol in enumerate(symbols):
            await venue.send(
                f"{symbol.lower()}@trade", spot_trade(symbol, 1, "1.00000000", "2.00000000", True, TS + i)
            )
        await eventually(lambda: len([m for m in received if m.subject.startswith(f"md.{unique}")]) == 5)

    assert len(venue.connections) == 3
    assert all(len(c.streams) <= 4 for c in venue.connections)
