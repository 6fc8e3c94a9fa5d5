"""The Binance connector end to end: fake Binance on loopback -> connector_feed -> real NATS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import DepthUpdate, TradeTick, subjects
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.dedupe import TradeDedupe
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.service import feed_health
from services.connector_feed.stream import HFTConnectorStream
from tests.binance_helpers import SubscriberBook
from tests.binance_helpers import feed as binance_feed
from tests.fake_binance import (
    FakeBinance,
    Market,
    agg_trade,
    book_scenario,
    combined,
    dumps,
    error_reply,
    futures_trade,
    load_lines,
    spot_partial_book,
    spot_trade,
    subscription_reply,
)
from tests.helpers import collect, eventually, running_stream

TS = 1_770_000_000_000


@asynccontextmanager
async def feed(
    venue: FakeBinance, nats_url: str, market: Market, symbols: str, depth_stream: str = "diff"
) -> AsyncIterator[HFTConnectorStream]:
    settings = BinanceSettings(
        binance_market=market,
        symbols=symbols,
        binance_ws_url=venue.ws_url,
        binance_rest_url=venue.rest_url,
        binance_depth_limit=1000,
        binance_depth_stream=depth_stream,
    )
    policy = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)
    async with running_stream(
        BinanceConnector(settings, policy), nats_url, settings.symbols, policy, "binance"
    ) as stream:
        yield stream


def _books(messages: list[Msg]) -> SubscriberBook:
    return SubscriberBook.of(messages)


async def _run_book(nats_url: str, nc: Client, market: Market, unique: str) -> None:
    venue_symbol = unique.upper()
    published = venue_symbol + ("-PERP" if market == "usdm" else "")
    # 500 levels a side: the whole snapshot fits the REST limit (1000), so the book is fully known.
    snapshot, diffs, expected = book_scenario(venue_symbol, market, 400, seed=11, levels=500)
    assert expected is not None
    depth = await collect(nc, subjects.depth(published))
    async with FakeBinance(market) as venue:
        venue.load_snapshot(snapshot)
        async with feed(venue, nats_url, market, venue_symbol):
            stream_name = f"{venue_symbol.lower()}@depth@100ms"
            await venue.wait_for_subscribers([stream_name])
            for diff in diffs:
                await venue.send(stream_name, diff)
            await eventually(
                lambda: bool(depth) and _books(depth).last == expected.last_update_id, timeout_s=10
            )
    book = _books(depth)
    assert book.snapshots == 1 and book.chain_breaks == 0
    assert book.equals(expected), "the subscriber's book differs from snapshot + diffs"
    assert len(venue.snapshot_requests) == 1


async def test_spot_book_rebuilt_by_a_subscriber_equals_snapshot_plus_diffs(
    nats_url: str, nc: Client, unique: str
) -> None:
    await _run_book(nats_url, nc, "spot", unique)


async def test_futures_book_rebuilt_by_a_subscriber_equals_snapshot_plus_diffs(
    nats_url: str, nc: Client, unique: str
) -> None:
    await _run_book(nats_url, nc, "usdm", unique)


async def test_every_spot_trade_reaches_nats_once_with_its_decimal_strings(
    nats_url: str, nc: Client, unique: str
) -> None:
    trades = await collect(nc, subjects.trades(unique))
    async with FakeBinance("spot") as venue, feed(venue, nats_url, "spot", unique) as stream:
        name = f"{unique.lower()}@trade"
        await venue.wait_for_subscribers([name])
        for i in range(1, 301):
            await venue.send(
                name, spot_trade(unique, 1000 + i, f"6500{i % 10}.{i:08d}", "0.00000001", i % 2 == 0, TS + i)
            )
        await venue.send(name, spot_trade(unique, 1400, "1.00000000", "1.00000000", False, TS + 999))  # a gap
        await eventually(lambda: len(trades) == 301)
        health = stream.connector.health()

    ticks = [TradeTick.model_validate_json(m.data) for m in trades]
    assert [t.trade_id for t in ticks] == [*range(1001, 1301), 1400]
    assert (
        json.loads(trades[0].data)["price"] == "65001.00000001"
        and json.loads(trades[0].data)["qty"] == "0.00000001"
    )
    assert ticks[1].side == "sell" and ticks[1].is_buyer_maker  # buyer is maker -> sell
    assert (ticks[0].exchange, ticks[0].ts_event) == ("binance", (TS + 1) * 1_000_000)
    assert health["trade_gaps"] == {unique: 1}


async def test_futures_trades_come_over_the_routed_market_path(
    nats_url: str, nc: Client, unique: str
) -> None:
    trades = await collect(nc, subjects.trades(unique + "-PERP"))
    async with FakeBinance("usdm") as venue, feed(venue, nats_url, "usdm", unique):
        name = f"{unique.lower()}@aggTrade"
        await venue.wait_for_subscribers([name, f"{unique.lower()}@depth@100ms"])
        for i in range(1, 51):
            await venue.send(
                name,
                agg_trade(unique, i, "65000.10", "0.002", False, TS + i, i * 10, i * 10 + 2, futures=True),
            )
        await eventually(lambda: len(trades) == 50)
        paths = sorted(c.path.split("?")[0] for c in venue.connections)

    assert paths == ["/market/stream", "/public/stream"]
    assert {TradeTick.model_validate_json(m.data).exchange for m in trades} == {"binance_usdm"}


async def test_a_gap_resyncs_that_symbol_alone(nats_url: str, nc: Client, unique: str) -> None:
    a, b = f"{unique}A", f"{unique}B"
    snap_a, diffs_a, _ = book_scenario(a, "spot", 60, seed=1, levels=50, gap_at=30)
    snap_b, diffs_b, expected_b = book_scenario(b, "spot", 60, seed=2, levels=50)
    assert expected_b is not None
    depth_a = await collect(nc, subjects.depth(a))
    depth_b = await collect(nc, subjects.depth(b))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snap_a)
        venue.load_snapshot(snap_b)
        async with feed(venue, nats_url, "spot", f"{a},{b}") as stream:
            streams = [f"{a.lower()}@depth@100ms", f"{b.lower()}@depth@100ms"]
            await venue.wait_for_subscribers(streams)
            for diff_b in diffs_b:
                await venue.send(streams[1], diff_b)
            for diff_a in diffs_a[:30]:  # up to the hole (diff 30 was left out)
                await venue.send(streams[0], diff_a)
            await eventually(lambda: _books(depth_a).snapshots == 1 if depth_a else False)
            # The venue moves on: its snapshot is now as of the first diff after the hole.
            venue.set_snapshot(a, diffs_a[30]["u"], snap_a.bids, snap_a.asks)
            for diff_a in diffs_a[30:]:
                await venue.send(streams[0], diff_a)
            await eventually(lambda: _books(depth_a).snapshots == 2 if depth_a else False)
            await eventually(lambda: bool(depth_b) and _books(depth_b).last == expected_b.last_update_id)
            books = stream.connector.health()["books"]

    requests = [r.symbol for r in venue.snapshot_requests]
    assert requests.count(b) == 1, "the other symbol was not disturbed"
    assert 2 <= requests.count(a) <= 3  # initial + the resync (+ at most one refetch the procedure asks for)
    assert books[a]["gaps"] == 1 and books[b]["gaps"] == 0
    assert _books(depth_b).equals(expected_b)
    assert _books(depth_a).chain_breaks == 0  # after the gap, A's next message was a snapshot


async def test_malformed_and_control_frames_are_skipped_without_a_reconnect(
    nats_url: str, nc: Client, unique: str
) -> None:
    trades = await collect(nc, subjects.trades(unique))
    async with FakeBinance("spot") as venue, feed(venue, nats_url, "spot", unique) as stream:
        name = f"{unique.lower()}@trade"
        await venue.wait_for_subscribers([name])
        await venue.send(name, spot_trade(unique, 1, "1.00000000", "1.00000000", False, TS))
        for line in load_lines("malformed_frames.txt"):
            await venue.send_raw(line)
        for control in (subscription_reply(1), error_reply(2, "Invalid request", 3)):
            await venue.send_raw(dumps(control))
        await venue.send_raw(
            dumps(combined(name, spot_trade(unique, 2, "2.00000000", "1.00000000", False, TS)))
        )
        await eventually(lambda: len(trades) == 2)
        health: dict[str, Any] = stream.connector.health()

    assert len(venue.connections) == 1, "a malformed frame must not cause a reconnect"
    assert sum(health["malformed"].values()) == len(load_lines("malformed_frames.txt"))
    assert health["control"] == {"subscription_reply": 1, "error": 1}
    assert stream.connector.counters().reconnects == 0


async def test_partial_book_mode_publishes_snapshots(nats_url: str, nc: Client, unique: str) -> None:
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue, feed(venue, nats_url, "spot", unique, "partial5"):
        name = f"{unique.lower()}@depth5@100ms"
        await venue.wait_for_subscribers([name])
        for i in range(3):
            await venue.send(
                name, spot_partial_book(100 + i, [[f"1.{i}0000000", "1.00000000"]], [["2.00000000", "3"]])
            )
        await eventually(lambda: len(depth) == 3)

    updates = [DepthUpdate.model_validate_json(m.data) for m in depth]
    assert all(u.is_snapshot for u in updates)
    assert [u.last_update_id for u in updates] == [100, 101, 102]
    assert json.loads(depth[2].data)["bids"] == [["1.20000000", "1.00000000"]]
    assert venue.snapshot_requests == []  # no REST in the lighter mode


async def test_health_says_resyncing_while_a_snapshot_is_awaited(
    nats_url: str, nc: Client, unique: str
) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", 20, seed=3, levels=20)
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        venue.hold_snapshots()
        async with feed(venue, nats_url, "spot", unique) as stream:
            name = f"{unique.lower()}@depth@100ms"
            await venue.wait_for_subscribers([name])
            for diff in diffs:
                await venue.send(name, diff)
            await venue.wait_for_snapshot_requests(1)
            held = feed_health(stream, stream.bus, 10.0, stream.telemetry).report()
            venue.release_snapshots()
            await eventually(lambda: bool(depth))
            health = feed_health(stream, stream.bus, 10.0, stream.telemetry)
            await eventually(lambda: not any("resyncing" in r for r in health.report()["reasons"]))

    assert held["status"] == "degraded"
    assert f"{unique} resyncing: connected: building the book" in held["reasons"]
    assert held["connector"]["connector_health"]["books"][unique]["state"] == "waiting"


def test_trades_from_two_sockets_are_kept_once_even_out_of_order() -> None:
    dedupe = TradeDedupe()

    kept = [t for t in (100, 102, 101, 102, 100, 103) if dedupe.admit("BTCUSDT", t)]

    assert kept == [100, 102, 101, 103]  # one socket ran ahead: 101 is late, not a duplicate
    assert dedupe.duplicates == 2
    assert dedupe.gaps == {"BTCUSDT": 1}  # a jump past the newest id is counted at once


async def test_usdm_trade_stream_publishes_market_prints_and_counts_the_others_by_type(
    nats_url: str, nc: Client, unique: str
) -> None:
    trades = await collect(nc, subjects.trades(unique + "-PERP"))
    prints = ["MARKET", "MARKET", "INSURANCE_FUND", "ADL", "MARKET", "NA", "ADL", "MARKET"]
    async with (
        FakeBinance("usdm") as venue,
        binance_feed(venue, nats_url, unique, binance_trade_stream="trade") as stream,
    ):
        name = f"{unique.lower()}@trade"
        await venue.wait_for_subscribers([name])
        for trade_id, kind in enumerate(prints, start=1):
            await venue.send(name, futures_trade(unique, trade_id, "65000.1", "0.002", False, TS, kind))
        await eventually(lambda: stream.connector.health()["unpublished"].get("ADL") == 2)
        await eventually(lambda: len(trades) == 4)
        health = stream.connector.health()

    assert [TradeTick.model_validate_json(m.data).trade_id for m in trades] == [1, 2, 5, 8]
    assert health["unpublished"] == {"INSURANCE_FUND": 1, "ADL": 2, "NA": 1}
    assert health["trade_gaps"] == {}, "skipping a non-market print is no gap"


def test_a_skipped_print_is_no_gap_and_never_hides_a_trade() -> None:
    dedupe = TradeDedupe()

    kept = [dedupe.admit("X", 1), dedupe.admit("X", 2)]
    dedupe.skip("X", 3)  # an insurance-fund print of the same sequence
    kept += [dedupe.admit("X", 4), dedupe.admit("X", 3)]  # were 3 a market trade after all, it is kept

    assert kept == [True, True, True, True]
    assert dedupe.gaps == {} and dedupe.duplicates == 0
