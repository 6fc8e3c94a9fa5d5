"""Make-before-break against a venue whose sockets are not in lockstep.

The fake starts each socket's streams 200-400 ms after its handshake (so the old socket delivers
frames the new one never sends) and delays each socket's frames by a latency of its own (so either
may run ahead, and the overlap varies). Through rotations by age and ``serverShutdown``, with a
venue that keeps trading, every trade reaches NATS exactly once, the depth chain never breaks, no
book is resynced and no ``resyncing`` is published after the first ``live``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from nats.aio.client import Client

from schemas import TradeTick, subjects
from tests.binance_helpers import SubscriberBook, feed, snapshots, states
from tests.fake_binance import FakeBinance, FakeConnection, Market, dumps, server_shutdown
from tests.helpers import collect, eventually
from tests.live_venue import LiveVenue

TS = 1_770_000_000_000
DIFFS = 700
#: How long the venue keeps a socket open after announcing its shutdown.
SHUTDOWN_GRACE_S = 2.0


async def _cut_later(conns: list[FakeConnection]) -> list[bool]:
    """The venue closes the announced sockets after its grace; True where the client had already left."""
    await asyncio.sleep(SHUTDOWN_GRACE_S)
    left = [conn.closed for conn in conns]
    for conn in conns:
        if not conn.closed:
            with contextlib.suppress(Exception):
                await conn.ws.close(1001, "going away")
    return left


@pytest.mark.parametrize(
    ("market", "trigger", "seed"),
    [
        ("spot", "age", 1),
        ("spot", "serverShutdown", 2),
        ("usdm", "age", 3),
        ("usdm", "serverShutdown", 4),
    ],
)
async def test_a_replaced_connection_loses_no_trade_leaves_no_gap_and_never_resyncs(
    nats_url: str, nc: Client, unique: str, market: Market, trigger: str, seed: int
) -> None:
    symbol = unique + ("-PERP" if market == "usdm" else "")
    statuses = await collect(nc, subjects.status(symbol))
    depth = await collect(nc, subjects.depth(symbol))
    trades = await collect(nc, subjects.trades(symbol))
    overrides: dict[str, Any] = {"binance_rotate_after_s": 1.0} if trigger == "age" else {}
    cuts: list[asyncio.Task[list[bool]]] = []
    async with FakeBinance(market, start_delay=(0.2, 0.4), lag=(0.0, 0.03), seed=seed) as venue:
        live = LiveVenue(venue, unique, market, diffs=DIFFS, seed=seed)
        async with feed(venue, nats_url, unique, **overrides) as stream:
            await eventually(lambda: venue.streaming(live.streams))
            player = asyncio.create_task(live.play(DIFFS, 0.004))
            if trigger == "serverShutdown":
                for at in (DIFFS // 4, DIFFS // 2):  # twice: a replacement is replaced in turn
                    await eventually(lambda at=at: live.sent >= at, 10)  # type: ignore[misc]
                    announced = list(venue.open_connections)
                    await venue.send_raw(dumps(server_shutdown(TS, combined=True)))
                    cuts.append(asyncio.create_task(_cut_later(announced)))
            await player
            await eventually(lambda: len(trades) >= live.trades, 10)
            await eventually(lambda: SubscriberBook.of(depth).last == live.last_update_id, 10)
            left = [all(await cut) for cut in cuts]
            health = stream.connector.health()
            counters = stream.connector.counters()

    ids = [TradeTick.model_validate_json(m.data).trade_id for m in trades]
    assert ids == list(range(1, live.trades + 1)), "every trade exactly once, in order"
    assert health["trade_gaps"] == {}
    book = SubscriberBook.of(depth)
    assert book.chain_breaks == 0 and book.snapshots == snapshots(depth) == 1
    assert book.levels() == live.book()
    assert len(venue.snapshot_requests) == 1, "a replacement must not resync a book"
    assert health["books"][symbol]["gaps"] == 0 and counters.gaps == {symbol: 0}
    assert states(statuses) == ["resyncing", "live"]
    assert counters.reconnects == 0 and health["forced_rotations"] == 0
    links = 2 if market == "usdm" else 1
    assert health["rotations"] >= 2 * links
    assert left == [True] * len(cuts), "the client left each announced socket before the venue cut it"


async def test_a_socket_the_venue_cuts_before_its_replacement_joined_is_replaced_once(
    nats_url: str, nc: Client, unique: str
) -> None:
    statuses = await collect(nc, subjects.status(unique))
    depth = await collect(nc, subjects.depth(unique))
    trades = await collect(nc, subjects.trades(unique))
    async with FakeBinance("spot", start_delay=(0.3, 0.4), seed=5) as venue:
        live = LiveVenue(venue, unique, "spot", diffs=400, seed=5)
        async with feed(venue, nats_url, unique) as stream:
            await eventually(lambda: venue.streaming(live.streams))
            player = asyncio.create_task(live.play(400, 0.004))
            await eventually(lambda: live.sent >= 100)
            announced = list(venue.open_connections)
            await venue.send_raw(dumps(server_shutdown(TS, combined=True)))
            await eventually(lambda: len(venue.connections) == 2)  # the replacement's handshake
            for conn in announced:  # cut at once: the new socket's streams have not started yet
                await conn.ws.close(1001, "going away")
            await player
            await eventually(lambda: SubscriberBook.of(depth).last == live.last_update_id, 10)
            await eventually(lambda: states(statuses)[-1:] == ["live"])
            health = stream.connector.health()
            opened, still_open = len(venue.connections), len(venue.open_connections)

    ids = [TradeTick.model_validate_json(m.data).trade_id for m in trades]
    assert ids == sorted(set(ids)) and ids[-1] == live.trades, "no duplicate, nothing out of order"
    lost = live.trades - len(ids)
    assert lost > 0 and health["trade_gaps"] == {unique: 1}, "the trades lost in the cut are counted"
    assert (opened, still_open) == (2, 1), "replaced once, not twice"
    book = SubscriberBook.of(depth)
    assert book.chain_breaks == 0 and book.levels() == live.book()
    assert health["books"][unique]["gaps"] == 1 and len(venue.snapshot_requests) == 2
    assert "reconnecting" not in states(statuses)
