"""Any subscriber, joining at any time and losing any message, holds the exact book or knows it
does not and is recovering - with real processes, a real nats-server and the fake Binance.

Also: USD-M and spot through every service, with SYMBOLS in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from schemas import ContextSnapshot, DepthUpdate, subjects
from services.common.bus import Bus
from services.common.health import ExtraEndpoint, HealthService
from services.common.natsserver import NatsServer
from services.context.service import ContextService
from services.context.settings import ContextSettings
from tests.fake_binance import FakeBinance, Market
from tests.helpers import collect, eventually
from tests.live_venue import LiveVenue

ROOT = Path(__file__).parent.parent


class Stack:
    """Service processes started and stopped one by one, on one environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **extra: str) -> None:
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env={**self.env, **extra},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, name: str) -> int:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=15)

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.running)}


@contextmanager
def stack(nats_url: str, venue: FakeBinance, symbols: str, **extra: str) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BINANCE_", "STUB_", "VWAP_"))}
    env.update(
        NATS_URL=nats_url,
        SYMBOLS=symbols,
        DATA_SOURCE="binance_ws",
        BINANCE_MARKET=venue.market,
        BINANCE_WS_URL=venue.ws_url,
        BINANCE_REST_URL=venue.rest_url,
        BINANCE_HALF_OPEN_S="30",  # the venue here pauses between test phases: not a dead socket
        BINANCE_STALE_DEPTH_S="30",
        MD_SNAPSHOT_INTERVAL_S="0",  # recovery by request only, as a plain subscriber would do it
        VWAP_MIN_TRADES="2",
        VWAP_THRESHOLD_BPS="0.5",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    running = Stack(env)
    try:
        yield running
    finally:
        codes = running.stop_all()
        assert all(code == 0 for code in codes.values()), codes


async def _snapshot(nc: Client, instrument: str) -> ContextSnapshot | None:
    try:
        reply = await nc.request(subjects.context_snapshot(instrument), b"", timeout=1)
    except (TimeoutError, nats.errors.NoRespondersError):
        return None
    if (reply.headers or {}).get("Nats-Service-Error-Code"):
        return None
    return ContextSnapshot.model_validate_json(reply.data)


async def _context_book(nc: Client, instrument: str) -> ContextSnapshot | None:
    snap = await _snapshot(nc, instrument)
    return snap if snap is not None and snap.book_synced else None


def _matches(snap: ContextSnapshot | None, live: LiveVenue) -> bool:
    if snap is None or not snap.book_synced:
        return False
    bids, asks = live.book()
    return (
        snap.book_update_id == live.last_update_id
        and (snap.best_bid, snap.best_ask) == (max(bids), min(asks))
        and (snap.bid_levels, snap.ask_levels) == (len(bids), len(asks))
    )


async def _eventually_matches(
    nc: Client, instrument: str, live: LiveVenue, timeout_s: float = 10
) -> ContextSnapshot:
    found: list[ContextSnapshot] = []

    async def check() -> bool:
        snap = await _context_book(nc, instrument)
        if _matches(snap, live):
            assert snap is not None
            found.append(snap)
            return True
        return False

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"context's book of {instrument} never matched the venue's: {await _snapshot(nc, instrument)}"
    )


@pytest.mark.parametrize(("market", "suffix"), [("spot", ""), ("usdm", "-PERP")])
async def test_spot_and_usdm_flow_through_every_service_with_symbols_in_any_case(
    nats_url: str, nc: Client, unique: str, market: Market, suffix: str
) -> None:
    instrument = unique + suffix
    signals = await collect(nc, f"signals.vwap.{instrument}")
    async with FakeBinance(market) as venue:
        live = LiveVenue(venue, unique, market, diffs=120)
        with stack(nats_url, venue, unique.lower()) as services:  # SYMBOLS in lower case
            services.start("context")
            services.start("strategy_engine")
            services.start("connector_feed")
            await venue.wait_for_subscribers(live.streams, timeout=15)
            await _ready(nc, "context", "strategy_engine")  # subscribed before the first trade
            await live.play(len(live.diffs))
            await _eventually_matches(nc, instrument, live)
            for _ in range(100):  # trades come over their own connection (USD-M /market), in their own time
                snap = await _context_book(nc, instrument)
                if snap is not None and snap.trade_count == len(live.diffs):
                    break
                await asyncio.sleep(0.05)
            await eventually(lambda: bool(signals), timeout_s=10)

    assert snap is not None and snap.symbol == instrument and snap.trade_count == len(live.diffs)
    assert snap.exchange == ("binance" if market == "spot" else "binance_usdm")
    assert all(m.subject == f"signals.vwap.{instrument}" for m in signals)


async def test_a_context_restarted_mid_stream_is_synced_within_two_seconds(
    nats_url: str, nc: Client, unique: str
) -> None:
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, unique, "spot", diffs=400)
        with stack(nats_url, venue, unique) as services:
            services.start("connector_feed")
            await venue.wait_for_subscribers(live.streams, timeout=15)
            services.start("context")
            await _ready(nc, "context")  # subscribed: on a quiet symbol it learns of it from the data
            await live.play(100)
            await _eventually_matches(nc, unique, live)

            assert services.stop("context") == 0
            await live.play(100)  # the feed goes on; nobody keeps context's book meanwhile
            services.start("context")
            started = time.monotonic()
            player = asyncio.create_task(live.play(200, 0.01))  # and keeps going while it starts
            synced_in = await _time_to_synced(nc, unique, started)
            await player
            await _eventually_matches(nc, unique, live)

    assert synced_in < 2.0, f"context took {synced_in:.2f}s to hold a synced book"


async def _ready(nc: Client, *services: str) -> None:
    for service in services:
        for _ in range(300):
            try:
                await nc.request(subjects.health(service), b"", timeout=0.5)
                break
            except (TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.05)


async def _time_to_synced(nc: Client, instrument: str, started: float) -> float:
    while time.monotonic() - started < 10:
        if await _context_book(nc, instrument) is not None:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return float("inf")


async def test_a_feed_restart_is_noticed_and_every_book_keeper_recovers(
    nats_url: str, nc: Client, unique: str
) -> None:
    depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue:
        live = LiveVenue(venue, unique, "spot", diffs=300)
        with stack(nats_url, venue, unique) as services:
            services.start("context")
            services.start("connector_feed")
            await venue.wait_for_subscribers(live.streams, timeout=15)
            await live.play(100)
            first = await _eventually_matches(nc, unique, live)

            assert services.stop("connector_feed") == 0
            await live.play(50)  # missed by everyone
            services.start("connector_feed")  # a new run: seq starts over at 1
            await eventually(lambda: len(venue.open_connections) == 1, timeout_s=15)
            await venue.wait_for_subscribers(live.streams, timeout=15)
            await live.play(150)
            second = await _eventually_matches(nc, unique, live)

    runs = {DepthUpdate.model_validate_json(m.data).feed_run for m in depth}
    assert len(runs) == 2
    assert second.book_gaps > first.book_gaps  # the new run was noticed as a gap in context's book


async def test_a_context_that_loses_messages_recovers_its_book_by_request(unique: str) -> None:
    """A slow consumer (NATS drops for it) and then a NATS restart (a reconnect): context notices
    both, asks the feed for the book and holds the venue's book again - without a restart."""
    server = NatsServer().start()
    restarted: NatsServer | None = None
    try:
        async with FakeBinance("spot") as venue:
            live = LiveVenue(venue, unique, "spot", diffs=1200)
            with stack(server.url, venue, unique) as services:
                services.start("connector_feed")
                await venue.wait_for_subscribers(live.streams, timeout=15)
                async with _context_in_process(server.url, unique) as context:
                    nc = await nats.connect(server.url)
                    await live.play(100)
                    await _eventually_matches(nc, unique, live)

                    # 1. A slow consumer: the loop stalls while a burst arrives; NATS drops for it.
                    # The venue runs on this loop too: how much of a burst lands inside the stall
                    # is timing, so a burst that happened to be absorbed is followed by another.
                    for _ in range(4):
                        burst = asyncio.create_task(live.play(200, 0))
                        await asyncio.sleep(0.05)
                        time.sleep(0.5)  # noqa: ASYNC251 - the stall is the point
                        await burst
                        with contextlib.suppress(AssertionError):
                            await eventually(lambda: context.bus.stats.slow_consumer_drops > 0, timeout_s=2)
                            break
                    assert context.bus.stats.slow_consumer_drops > 0
                    await _eventually_matches(nc, unique, live)
                    lost = dict(context.contexts[unique].keeper.stats.reasons)

                    # 2. The NATS server restarts: everyone reconnects; messages in between are lost.
                    server.stop()
                    await live.play(50)
                    restarted = NatsServer(port=server.port).start()
                    await eventually(lambda: context.bus.stats.reconnects >= 1, timeout_s=15)
                    await eventually(lambda: nc.is_connected, timeout_s=10)
                    await live.play(250, 0.005)
                    await _eventually_matches(nc, unique, live, timeout_s=15)
                    after = dict(context.contexts[unique].keeper.stats.reasons)
                    await nc.close()
    finally:
        for running in (server, restarted):
            if running is not None:
                running.stop()

    assert lost.get("slow_consumer", 0) >= 1
    assert after.get("reconnected", 0) >= 1


@asynccontextmanager
async def _context_in_process(url: str, symbol: str) -> AsyncIterator[ContextService]:
    settings = ContextSettings(nats_url=url, symbols=symbol, nats_pending_msgs_limit=20)
    bus = await Bus.connect(url, "context-test")
    service = ContextService(bus, settings)
    health = HealthService("context", "test", service.condition, service.details)
    await service.subscriber.start()
    await health.start(
        bus, [ExtraEndpoint("snapshot", subjects.CONTEXT_SNAPSHOT_PATTERN, service.on_snapshot_request)]
    )
    try:
        yield service
    finally:
        await health.stop()
        for context in service.contexts.values():
            await context.keeper.close()
        await bus.drain()
