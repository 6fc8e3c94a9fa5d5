"""What md.<SYMBOL>.status says, and health with it, through stale streams, half-open sockets,
reconnects and refusals: read only from NATS (and health), against a fake venue that keeps trading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client

from schemas import Status, TradeTick, subjects
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.service import feed_health
from services.connector_feed.stream import HFTConnectorStream
from tests.binance_helpers import SubscriberBook, feed, states
from tests.fake_binance import FakeBinance, spot_depth_diff
from tests.helpers import collect, eventually
from tests.live_venue import LiveVenue

TS = 1_770_000_000_000


@asynccontextmanager
async def playing(*venues: LiveVenue, interval_s: float = 0.01) -> AsyncIterator[None]:
    """The venues trade (a diff and a trade each, every ``interval_s``) for the block."""
    players = [asyncio.create_task(v.play(len(v.diffs), interval_s)) for v in venues]
    try:
        yield
    finally:
        for player in players:
            player.cancel()
        await asyncio.gather(*players, return_exceptions=True)


def reasons(stream: HFTConnectorStream) -> list[str]:
    report = feed_health(stream, stream.bus, 60.0, stream.telemetry).report()
    found: list[str] = report["reasons"]
    return found


async def test_a_stuck_depth_stream_goes_stale_then_resyncing_then_live_and_its_neighbour_is_untouched(
    nats_url: str, nc: Client, unique: str
) -> None:
    a, b = f"{unique}A", f"{unique}B"
    status_a, status_b = await collect(nc, subjects.status(a)), await collect(nc, subjects.status(b))
    depth_a, depth_b = await collect(nc, subjects.depth(a)), await collect(nc, subjects.depth(b))
    async with FakeBinance("spot") as venue:
        live_a, live_b = LiveVenue(venue, a, "spot", diffs=800, seed=1), LiveVenue(venue, b, "spot", 800, 2)
        async with feed(venue, nats_url, f"{a},{b}", binance_stale_depth_s=0.5) as stream:
            await venue.wait_for_subscribers([*live_a.streams, *live_b.streams])
            async with playing(live_a, live_b):
                await eventually(lambda: states(status_a) == states(status_b) == ["resyncing", "live"])
                venue.mute(live_a.depth_stream)  # stuck on this socket; a new one would deliver it
                await eventually(lambda: states(status_a)[2:] == ["stale", "resyncing", "live"], 5)
                await eventually(lambda: SubscriberBook.of(depth_a).last == live_a.last_update_id)
            await eventually(lambda: SubscriberBook.of(depth_b).last == live_b.last_update_id)
            health = stream.connector.health()
            opened, still_open = len(venue.connections), len(venue.open_connections)

    assert states(status_a) == ["resyncing", "live", "stale", "resyncing", "live"]
    stale, resumed = (Status.model_validate_json(m.data) for m in status_a[2:4])
    assert (stale.stream, stale.reason[:12]) == ("depth", "no depth for")
    assert resumed.reason == "depth data flows again; sequence gap in the depth stream: resyncing"
    assert states(status_b) == ["resyncing", "live"], "the healthy symbol saw nothing"
    book_b = SubscriberBook.of(depth_b)
    assert book_b.snapshots == 1 and book_b.chain_breaks == 0 and book_b.levels() == live_b.book()
    assert SubscriberBook.of(depth_a).levels() == live_a.book()
    assert [r.symbol for r in venue.snapshot_requests].count(b) == 1
    assert (opened, still_open) == (2, 1), "the connection was replaced once, make-before-break"
    assert health["rotations"] == 1 and health["reconnects"] == 0 and health["stale_repairs"] >= 1


async def test_a_quiet_trade_stream_is_stale_and_resubscribed_not_resyncing(
    nats_url: str, nc: Client, unique: str
) -> None:
    statuses = await collect(nc, subjects.status(unique))
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, unique, "spot", diffs=400)
        async with feed(venue, nats_url, unique, binance_stale_trades_s=0.3) as stream:
            await venue.wait_for_subscribers(live.streams)
            while states(statuses)[-1:] != ["live"] and live.sent < 100:  # depth and trades
                await live.step()
                await asyncio.sleep(0.01)
            for _ in range(60):  # depth alone: the trade stream is quiet
                await venue.send(live.depth_stream, live.diffs[live.sent])
                live.sent += 1
                await asyncio.sleep(0.01)
            quiet = reasons(stream)
            await live.step()  # a trade again
            await eventually(lambda: states(statuses)[-1:] == ["live"])
            subscribes = [m for c in venue.connections for m in c.received if "SUBSCRIBE" in m]

    assert states(statuses) == ["resyncing", "live", "stale", "live"]
    assert any(r.startswith(f"{unique} stale: no trades for") for r in quiet), quiet
    assert subscribes and all(live.trade_stream in m for m in subscribes)


async def test_a_book_synced_on_a_diff_publishes_live(nats_url: str, nc: Client, unique: str) -> None:
    statuses = await collect(nc, subjects.status(unique))
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, unique, "spot", diffs=40)
        venue.hold_snapshots()
        async with feed(venue, nats_url, unique) as stream:
            await venue.wait_for_subscribers(live.streams)
            for _ in range(10):
                await live.step()
            await venue.wait_for_snapshot_requests(1)
            venue.release_snapshots()  # as of the last diff sent: newer than every buffered diff

            def book() -> dict[str, Any]:
                found: dict[str, Any] = stream.connector.health()["books"][unique]
                return found

            await eventually(lambda: book()["stale_dropped"] >= 10)  # the snapshot covers them all
            waiting = (book()["state"], states(statuses))
            await live.step()  # the first diff after the snapshot: the book syncs on it
            await eventually(lambda: states(statuses)[-1:] == ["live"])
            health = feed_health(stream, stream.bus, 60.0, stream.telemetry).report()

    assert waiting == ("waiting", ["resyncing"])
    assert states(statuses) == ["resyncing", "live"]
    assert health["status"] == "ok", health["reasons"]


async def test_a_half_open_socket_is_replaced_within_about_3_s_and_the_other_is_untouched(
    nats_url: str, nc: Client, unique: str
) -> None:
    symbol = f"{unique}-PERP"
    statuses = await collect(nc, subjects.status(symbol))
    trades = await collect(nc, subjects.trades(symbol))
    async with FakeBinance("usdm") as venue:
        live = LiveVenue(venue, unique, "usdm", diffs=1400)
        async with feed(venue, nats_url, unique) as stream, playing(live):
            await eventually(lambda: states(statuses) == ["resyncing", "live"])
            assert len(venue.freeze("/public")) == 1  # silent, no pong, TCP open
            frozen_at = time.monotonic()
            await eventually(lambda: sum(c.path == "/public/stream" for c in venue.connections) == 2, 5)
            public_after = venue.connections[-1].opened_at - frozen_at
            # The statuses reach this subscriber through NATS, maybe after the new socket opened:
            # wait for the whole sequence, not for the last state (still the first "live" then).
            await eventually(lambda: len(states(statuses)) >= 5 and states(statuses)[-1:] == ["live"], 5)
            after_public = states(statuses)
            assert len(venue.freeze("/market")) == 1
            frozen_at = time.monotonic()
            await eventually(lambda: sum(c.path == "/market/stream" for c in venue.connections) == 2, 6)
            market_after = venue.connections[-1].opened_at - frozen_at
            await eventually(lambda: len(states(statuses)) >= 7 and states(statuses)[-1:] == ["live"], 5)
            await eventually(lambda: stream.connector.health()["trade_gaps"] == {symbol: 1})  # the freeze's
            paths = [c.path for c in venue.connections]
            health = stream.connector.health()

    assert 2.8 <= public_after <= 4.0, public_after  # BINANCE_HALF_OPEN_S=3 of silence
    assert after_public == ["resyncing", "live", "reconnecting", "resyncing", "live"]
    assert sorted(paths[:2]) == ["/market/stream", "/public/stream"]
    assert paths[2:] == ["/public/stream", "/market/stream"], "each replaced alone, the other untouched"
    assert market_after <= 4.0, market_after  # pinged after 1.5 s of silence, no pong within 1.5 s
    assert states(statuses)[5:] == ["reconnecting", "live"], "a trade link: no book to resync"
    ids = [TradeTick.model_validate_json(m.data).trade_id for m in trades]
    missing = ids[-1] - ids[0] + 1 - len(ids)  # lost while /market was frozen, and only then: one gap
    assert ids == sorted(set(ids)) and health["trade_gaps"] == {symbol: 1}
    assert health["trades_missing"] == {symbol: missing} and missing > 100
    assert health["half_open"] == 1 and health["reconnects"] == 2


async def test_health_says_per_symbol_reconnecting_resyncing_or_down(
    nats_url: str, nc: Client, unique: str
) -> None:
    good, refused = f"{unique}A", f"{unique}B"
    statuses = await collect(nc, subjects.status(good))
    slow = ReconnectPolicy(initial_s=1.0, max_s=1.0, max_attempts=0, reset_after_s=60)
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, good, "spot", diffs=300)  # no snapshot for the other: refused
        async with feed(venue, nats_url, f"{good},{refused}", slow) as stream:
            await venue.wait_for_subscribers(live.streams)
            await venue.send(f"{refused.lower()}@depth@100ms", spot_depth_diff(refused, 1, 2, [], [], TS))
            async with playing(live):
                await eventually(lambda: states(statuses)[-1:] == ["live"])
                await eventually(lambda: any(r.startswith(f"{refused} down:") for r in reasons(stream)))
                venue.hold_snapshots()
                await venue.drop_connections()
                await eventually(lambda: states(statuses)[-1:] == ["reconnecting"])
                while_reconnecting = reasons(stream)
                await eventually(lambda: states(statuses)[-1:] == ["resyncing"], 3)
                while_resyncing = reasons(stream)
                connector_reasons = stream.connector.health()["reasons"]
                venue.release_snapshots()
                await eventually(lambda: states(statuses)[-1:] == ["live"])
                when_live = reasons(stream)

    lost = "connection to the venue lost; reconnecting"
    assert f"{good} reconnecting: {lost}" in while_reconnecting
    assert f"{good} resyncing: reconnected" in while_resyncing
    assert connector_reasons[good] == "resyncing: reconnected"
    assert connector_reasons[refused].startswith("down: venue refused")
    assert any(r.startswith(f"{refused} down: venue refused") for r in when_live)
    assert not any(r.startswith(f"{good} ") for r in when_live)


async def test_book_counters_only_grow_over_reconnects(nats_url: str, nc: Client, unique: str) -> None:
    statuses = await collect(nc, subjects.status(unique))
    seen: list[tuple[int, int, int]] = []
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, unique, "spot", diffs=600)
        async with feed(venue, nats_url, unique) as stream, playing(live):
            for round_ in range(3):
                await eventually(lambda r=round_: states(statuses).count("live") == r + 1)  # type: ignore[misc]
                counters = stream.connector.counters()
                seen.append((counters.resyncs[unique], counters.gaps[unique], counters.reconnects))
                if round_ < 2:
                    await venue.drop_connections()

    assert seen == [(1, 0, 0), (2, 0, 1), (3, 0, 2)]
