"""md.<SYMBOL>.book: the feed's book on request, sequenced with md.<SYMBOL>.depth; periodic snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import DepthUpdate, subjects
from services.common.book import OrderBook, price_key
from services.common.bus import Bus, settled
from services.common.health import Condition, ExtraEndpoint, HealthService
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.book_requests import BookRequests
from services.connector_feed.connector import NativeConnector
from services.connector_feed.stream import HFTConnectorStream
from services.connector_feed.stub import StubbedConnector, StubSettings
from tests.fake_binance import FakeBinance, book_scenario
from tests.helpers import collect, eventually

QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)


@asynccontextmanager
async def feed_with_books(
    connector: NativeConnector, nats_url: str
) -> AsyncIterator[tuple[HFTConnectorStream, BookRequests]]:
    """A feed as run_feed runs it: the stream, and the book endpoint on its micro service."""
    bus = await Bus.connect(nats_url, "test-books")
    stream = HFTConnectorStream(connector, bus, 10_000)
    books = BookRequests(stream)
    health = HealthService("connector_feed_test", "test", lambda: Condition(True, 0.0, 10.0))
    await health.start(bus, [ExtraEndpoint("book", subjects.BOOK_PATTERN, books.on_request)])
    task = asyncio.create_task(stream.run())
    try:
        yield stream, books
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.close()
        await health.stop()
        await bus.drain()


def _apply(book: OrderBook, update: DepthUpdate) -> None:
    levels = [[(format(p, "f"), format(q, "f")) for p, q in side] for side in (update.bids, update.asks)]
    if update.is_snapshot:
        book.reset(levels[0], levels[1], update.last_update_id)
    else:
        book.apply(levels[0], levels[1], update.last_update_id)


def _levels(book: OrderBook) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    return (
        {price_key(p): Decimal(q) for p, q in book.bids()},
        {price_key(p): Decimal(q) for p, q in book.asks()},
    )


async def test_a_late_subscriber_gets_the_feeds_book_exactly_from_a_request_and_later_deltas(
    nats_url: str, nc: Client, unique: str
) -> None:
    snapshot, diffs, expected = book_scenario(unique, "spot", 120, seed=5, levels=200)
    assert expected is not None
    settings = BinanceSettings(symbols=unique, binance_ws_url="", binance_rest_url="")
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        settings = settings.model_copy(
            update={"binance_ws_url": venue.ws_url, "binance_rest_url": venue.rest_url}
        )
        async with feed_with_books(BinanceConnector(settings, QUICK), nats_url) as (stream, _):
            name = f"{unique.lower()}@depth@100ms"
            await venue.wait_for_subscribers([name])
            for diff in diffs[:60]:
                await venue.send(name, diff)
            await eventually(lambda: stream.book_copy(unique) is not None)
            # A subscriber joins late: deltas from now on, the book by request.
            late: list[Msg] = await collect(nc, subjects.depth(unique))
            for diff in diffs[60:80]:
                await venue.send(name, diff)
            reply = await nc.request(subjects.book(unique), b"", timeout=2)
            for diff in diffs[80:]:
                await venue.send(name, diff)
            await eventually(
                lambda: (
                    bool(late)
                    and DepthUpdate.model_validate_json(late[-1].data).last_update_id
                    == expected.last_update_id
                )
            )
            feed_run = stream.feed_run

    answer = DepthUpdate.model_validate_json(reply.data)
    assert answer.is_snapshot and answer.feed_run == feed_run and answer.seq is not None
    book = OrderBook()
    _apply(book, answer)
    for msg in late:  # the deltas after the reply's seq, in order, complete the book
        update = DepthUpdate.model_validate_json(msg.data)
        if update.seq is not None and update.seq > answer.seq:
            _apply(book, update)
    expected_levels = (
        {price_key(p): Decimal(q) for p, q in expected.bids.items()},
        {price_key(p): Decimal(q) for p, q in expected.asks.items()},
    )
    assert _levels(book) == expected_levels
    assert book.last_update_id == expected.last_update_id


async def test_depth_limits_the_levels_and_bad_requests_get_error_replies(
    nats_url: str, nc: Client, unique: str
) -> None:
    stub = StubbedConnector(
        StubSettings(symbols=unique, stub_seed=3, stub_trades_per_s=0.001, stub_depth_per_s=20)
    )
    depth = await collect(nc, subjects.depth(unique))
    async with feed_with_books(stub, nats_url) as (_, books):
        await eventually(lambda: bool(depth))
        top = await nc.request(subjects.book(unique), orjson.dumps({"depth": 3}), timeout=2)
        whole = await nc.request(subjects.book(unique), b"", timeout=2)
        unknown = await nc.request(subjects.book("NOSUCH"), b"", timeout=2)
        bad = [
            await nc.request(subjects.book(unique), body, timeout=2)
            for body in (b"{x", b"[]", b'{"depth": 0}', b'{"depth": "3"}')
        ]
        errors = books.health()["errors"]

    top_book, whole_book = (
        DepthUpdate.model_validate_json(top.data),
        DepthUpdate.model_validate_json(whole.data),
    )
    assert (len(top_book.bids), len(top_book.asks)) == (3, 3)
    assert top_book.bids == whole_book.bids[:3] and top_book.asks == whole_book.asks[:3]  # best first
    assert [p for p, _ in whole_book.bids] == sorted((p for p, _ in whole_book.bids), reverse=True)
    assert (unknown.headers or {}).get("Nats-Service-Error-Code") == "404"
    assert "this feed publishes" in orjson.loads(unknown.data)["error"]
    assert [(m.headers or {}).get("Nats-Service-Error-Code") for m in bad] == ["400"] * 4
    assert errors == {"404": 1, "400": 4}


async def test_a_book_being_resynced_is_refused_with_503(nats_url: str, nc: Client, unique: str) -> None:
    snapshot, diffs, _ = book_scenario(unique, "spot", 10, seed=6, levels=20)
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        venue.hold_snapshots()  # the book cannot sync
        settings = BinanceSettings(
            symbols=unique, binance_ws_url=venue.ws_url, binance_rest_url=venue.rest_url
        )
        async with feed_with_books(BinanceConnector(settings, QUICK), nats_url):
            name = f"{unique.lower()}@depth@100ms"
            await venue.wait_for_subscribers([name])
            await venue.send(name, diffs[0])
            await venue.wait_for_snapshot_requests(1)
            reply = await nc.request(subjects.book(unique), b"", timeout=2)
            venue.release_snapshots()

    assert (reply.headers or {}).get("Nats-Service-Error-Code") == "503"
    assert "resyncing" in orjson.loads(reply.data)["error"]


async def test_periodic_snapshots_take_their_place_in_the_depth_sequence(
    nats_url: str, nc: Client, unique: str
) -> None:
    snapshot, diffs, expected = book_scenario(unique, "spot", 40, seed=7, levels=50)
    assert expected is not None
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        settings = BinanceSettings(
            symbols=unique, binance_ws_url=venue.ws_url, binance_rest_url=venue.rest_url
        )
        async with feed_with_books(BinanceConnector(settings, QUICK), nats_url) as (_, books):
            name = f"{unique.lower()}@depth@100ms"
            await venue.wait_for_subscribers([name])
            periodic = asyncio.create_task(books.publish_periodically(0.05))
            for diff in diffs:
                await venue.send(name, diff)
                await asyncio.sleep(0.01)
            await eventually(lambda: books.snapshots_published >= 3)
            periodic.cancel()
            await asyncio.gather(periodic, return_exceptions=True)
            await settled(nc)
            await eventually(
                lambda: (
                    DepthUpdate.model_validate_json(depth[-1].data).last_update_id == expected.last_update_id
                )
            )

    updates = [DepthUpdate.model_validate_json(m.data) for m in depth]
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))  # one sequence, no gap
    assert sum(u.is_snapshot for u in updates) >= 3 + 1  # the sync snapshot, then the periodic ones
    book = OrderBook()
    for update in updates:  # any snapshot in the stream resets to exactly the book the deltas build
        _apply(book, update)
    assert _levels(book) == (
        {price_key(p): Decimal(q) for p, q in expected.bids.items()},
        {price_key(p): Decimal(q) for p, q in expected.asks.items()},
    )
