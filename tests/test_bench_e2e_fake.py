"""The end-to-end bench's fake Binance: frames our production parser and book accept, served right.

The bench itself (``bench/e2e_binance.py``) is never run in CI; these checks keep its venue honest:
the depth chain must sync a real book at any moment a snapshot is taken, both trade forms must
carry the same trades, and the hand-written server must speak HTTP and WebSocket to real clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from bench.e2e_conn import Conn
from bench.e2e_fake import Plan, Venue
from bench.e2e_frames import (
    FIRST_TRADE_ID,
    depth_pool,
    price_str,
    qty_str,
    trade_pool,
    ws_payload,
)
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.parse import BinanceParser, DepthDiff, parse_rest_snapshot
from services.connector_feed.events import Trade
from tests.helpers import eventually

T0_MS = 1_770_000_000_000


def as_decimals(levels: Sequence[Sequence[str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels}


def venue_side(side: dict[int, int]) -> dict[Decimal, Decimal]:
    return {Decimal(price_str(p)): Decimal(qty_str(q)) for p, q in side.items()}


@pytest.mark.parametrize("cursor", [0, 1, 57, 199])
def test_a_snapshot_taken_at_any_point_syncs_our_book_and_the_diffs_continue_it(cursor: int) -> None:
    # Arrange: a client has buffered the diffs sent so far, then fetches the snapshot
    pool = depth_pool(260, seed=3, t0_ms=T0_MS)
    parser = BinanceParser("spot", "trade")
    book = LocalBook("binance", "BTCUSDT", futures=False)

    def diff(i: int) -> DepthDiff:
        parsed = parser.parse(ws_payload(pool.frames[i]), 1)
        assert isinstance(parsed, DepthDiff)
        return parsed

    for i in range(cursor):
        book.on_diff(diff(i))

    # Act
    book.on_snapshot(parse_rest_snapshot(pool.snapshot(cursor, 5000)))
    for i in range(cursor, cursor + 60):
        book.on_diff(diff(i))

    # Assert: synced without a refetch or a gap, and equal to the venue's own book
    assert (book.state, book.stats.gaps, book.stats.refetches) == ("synced", 0, 0)
    bids, asks = pool.book_at(cursor + 60)
    assert as_decimals(book.book.bids()) == venue_side(bids)
    assert as_decimals(book.book.asks()) == venue_side(asks)
    assert max(bids) < min(asks)  # never crossed


def test_every_diff_has_10_to_20_levels_and_the_ids_chain() -> None:
    pool = depth_pool(200, seed=5, t0_ms=T0_MS)

    assert all(10 <= len(d.bids) + len(d.asks) <= 20 for d in pool.diffs)
    pairs = zip(pool.diffs, pool.diffs[1:], strict=False)
    assert all(b.first_update_id == a.last_update_id + 1 for a, b in pairs)
    assert all(d.last_update_id > d.first_update_id for d in pool.diffs)  # so a snapshot at U straddles


def test_trade_and_agg_trade_frames_carry_the_same_trades_with_contiguous_ids() -> None:
    pool = trade_pool(100, seed=1, t0_ms=T0_MS)

    raw = [BinanceParser("spot", "trade").parse(ws_payload(f), 1) for f in pool.trade]
    agg = [BinanceParser("spot", "aggTrade").parse(ws_payload(f), 1) for f in pool.agg]

    assert all(isinstance(t, Trade) for t in raw + agg)
    ids = list(range(FIRST_TRADE_ID, FIRST_TRADE_ID + 100))
    assert [t.trade_id for t in raw if isinstance(t, Trade)] == ids
    assert [(t.trade_id, t.price, t.qty, t.side) for t in raw if isinstance(t, Trade)] == [
        (t.trade_id, t.price, t.qty, t.side) for t in agg if isinstance(t, Trade)
    ]


async def test_the_fake_serves_rest_and_a_combined_stream_to_real_clients() -> None:
    # Arrange: the venue in this event loop, no warm-up
    venue = Venue(trade_pool(600, seed=2, t0_ms=T0_MS), depth_pool(100, seed=4, t0_ms=T0_MS))
    venue.warm = False
    server = await asyncio.get_running_loop().create_server(lambda: Conn(venue), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/v3/exchangeInfo") as reply:
                info = await reply.json()
            url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@aggTrade/btcusdt@depth@100ms"
            async with connect(url) as ws:
                await eventually(lambda: len(venue.conns) == 1)
                async with http.get(f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5") as reply:
                    snapshot = await reply.json()

                # Act: a burst of 500 trades with a diff after every 20th, then a ping
                venue.start(venue.conns[0], Plan(kind="burst", trades=500, depth_every=20))
                frames = [orjson.loads(await ws.recv()) for _ in range(525)]
                await asyncio.wait_for(await ws.ping(), 5)
                result = await venue.task if venue.task is not None else {}
    finally:
        server.close()

    # Assert
    assert info["symbols"][0]["symbol"] == "BTCUSDT"
    assert len(snapshot["bids"]) == len(snapshot["asks"]) == 5
    trades = [f["data"]["a"] for f in frames if f["stream"] == "btcusdt@aggTrade"]
    diffs = [f["data"] for f in frames if f["stream"] == "btcusdt@depth@100ms"]
    assert trades == list(range(FIRST_TRADE_ID, FIRST_TRADE_ID + 500))
    assert len(diffs) == 25 and diffs[0]["U"] == snapshot["lastUpdateId"]
    assert (result["trades"], result["depth_frames"], len(result["send_ns"])) == (500, 25, 500)


async def test_a_client_may_subscribe_live_instead_of_in_the_url() -> None:
    venue = Venue(trade_pool(50, seed=2, t0_ms=T0_MS), depth_pool(20, seed=4, t0_ms=T0_MS))
    venue.warm = False
    server = await asyncio.get_running_loop().create_server(lambda: Conn(venue), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/stream") as ws:
            await ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}')
            reply = orjson.loads(await ws.recv())
            venue.start(venue.conns[0], Plan(kind="burst", trades=10, depth_every=20))
            frames = [orjson.loads(await ws.recv()) for _ in range(10)]
    finally:
        server.close()

    assert reply == {"result": None, "id": 7}
    assert [f["data"]["t"] for f in frames] == list(range(FIRST_TRADE_ID, FIRST_TRADE_ID + 10))
