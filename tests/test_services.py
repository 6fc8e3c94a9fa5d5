"""Each service on a real nats-server: its subscriptions, replies, health and micro discovery."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import ContextSnapshot, DepthUpdate, Signal, TradeTick, subjects
from services.connector_feed.service import run_feed
from services.connector_feed.settings import FeedSettings
from services.context.service import run_context
from services.context.settings import ContextSettings
from services.strategy_engine.service import run_engine
from services.strategy_engine.settings import StrategySettings
from tests.helpers import eventually
from tests.micro import validated_discovery

S = 1_000_000_000
T0 = 1_700_000_000 * S


@asynccontextmanager
async def running(run: Callable[[Any, asyncio.Event], Awaitable[int]], settings: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task: asyncio.Task[int] = asyncio.ensure_future(run(settings, stop))
    try:
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def _health(nc: Client, service: str) -> dict[str, Any]:
    reply = await nc.request(subjects.health(service), b"", timeout=2)
    body: dict[str, Any] = json.loads(reply.data)
    return body


async def _wait_health(nc: Client, service: str) -> None:
    async def answered() -> bool:
        try:
            await _health(nc, service)
            return True
        except Exception:
            return False

    for _ in range(200):
        if await answered():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{service} never answered its health request")


def _tick(i: int, symbol: str, price: str) -> TradeTick:
    return TradeTick(
        exchange="stub",
        symbol=symbol,
        trade_id=i,
        price=Decimal(price),
        qty=Decimal("0.5"),
        side="buy",
        is_buyer_maker=False,
        ts_event=T0 + i * S,
        ts_recv=T0 + i * S,
    )


async def test_strategy_engine_turns_trades_into_signals(nats_url: str, nc: Client, unique: str) -> None:
    settings = StrategySettings(nats_url=nats_url, symbols=unique, vwap_min_trades=5, vwap_threshold_bps=10)
    signals: list[Msg] = []

    async def on_signal(msg: Msg) -> None:
        signals.append(msg)

    await nc.subscribe(subjects.signals("vwap", unique), cb=on_signal)
    async with running(run_engine, settings):
        await _wait_health(nc, "strategy_engine")
        for i, price in enumerate(["100"] * 5 + ["100.2"]):
            await nc.publish(subjects.trades(unique), _tick(i, unique, price).to_json())
        await nc.publish(subjects.trades(unique), b'{"not": "a trade"}')
        await eventually(lambda: len(signals) == 1)
        health = await _health(nc, "strategy_engine")
        discovery = await validated_discovery(nc, "strategy_engine")

    signal = Signal.model_validate_json(signals[0].data)
    assert (signal.side, signal.symbol, signal.ts_event) == ("sell", unique, T0 + 5 * S)
    assert health["status"] == "ok"
    assert health["invalid_messages"] == 1
    assert health["strategies"]["vwap"]["signals"] == 1
    assert discovery["info"]["endpoints"][0]["subject"] == "health.strategy_engine"
    assert discovery["stats"]["endpoints"][0]["data"]["trades"]["per_minute_count"] == 6


async def test_context_answers_snapshots_and_rejects_unknown_symbols(
    nats_url: str, nc: Client, unique: str
) -> None:
    settings = ContextSettings(nats_url=nats_url, symbols=unique, context_history_trades=2)
    async with running(run_context, settings):
        await _wait_health(nc, "context")
        for i, price in enumerate(["100.10", "100.30", "0.00000001"]):
            await nc.publish(subjects.trades(unique), _tick(i, unique, price).to_json())
        depth = DepthUpdate(
            exchange="stub",
            symbol=unique,
            bids=[(Decimal("99.5"), Decimal(1))],
            asks=[(Decimal("100.5"), Decimal(2))],
            is_snapshot=True,
            last_update_id=7,
            ts_event=T0,
            ts_recv=T0,
        )
        await nc.publish(subjects.depth(unique), depth.to_json())

        async def snapshot() -> ContextSnapshot:
            reply = await nc.request(subjects.context_snapshot(unique), b"", timeout=2)
            return ContextSnapshot.model_validate_json(reply.data)

        for _ in range(100):
            snap = await snapshot()
            if snap.trade_count == 3 and snap.book_synced:
                break
            await asyncio.sleep(0.02)
        unknown = await nc.request(subjects.context_snapshot("NOPE" + unique), b"", timeout=2)
        discovery = await validated_discovery(nc, "context")

    assert snap.last_price == Decimal("0.00000001")
    assert [t.trade_id for t in snap.recent_trades] == [1, 2]
    assert (snap.best_bid, snap.best_ask, snap.spread) == (Decimal("99.5"), Decimal("100.5"), Decimal(1))
    assert unknown.headers is not None
    assert unknown.headers["Nats-Service-Error-Code"] == "404"
    assert json.loads(unknown.data)["known_symbols"] == [unique]
    assert {e["name"] for e in discovery["info"]["endpoints"]} == {"health", "snapshot"}


async def test_connector_feed_health_and_discovery(nats_url: str, nc: Client, unique: str) -> None:
    settings = FeedSettings(
        nats_url=nats_url,
        symbols=unique,
        data_source="hft_connector",
        connector_name="stub",
        stub_seed=3,
        stub_trades_per_s=100,
        stub_depth_per_s=20,
    )
    async with running(run_feed, settings):
        await _wait_health(nc, "connector_feed")
        for _ in range(100):
            health = await _health(nc, "connector_feed")
            if health["status"] == "ok" and health["connector"]["connector_health"]["event_counter"] > 10:
                break
            await asyncio.sleep(0.02)
        discovery = await validated_discovery(nc, "connector_feed")

    assert health["status"] == "ok"
    assert health["service"] == "connector_feed" and health["version"] == discovery["info"]["version"]
    connector = health["connector"]
    assert connector["connected"] is True
    assert connector["last_ts"].endswith("+00:00")
    assert connector["reconnection_attempts"] == 0
    assert set(connector["connector_health"]) == {
        "connected",
        "subscribed_trades",
        "subscribed_depth",
        "event_counter",
    }
    assert discovery["info"]["description"]
    data = discovery["stats"]["endpoints"][0]["data"]
    assert set(data) == {"trades", "depth"}
    assert set(data["trades"]) == {"per_minute_count", "per_second_rate", "queue_size"}
    assert data["trades"]["per_minute_count"] > 0
