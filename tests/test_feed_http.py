"""The feed's optional HTTP port (HTTP_PORT): the seed's /ws/health and /metrics exactly, /health,
/livez and /readyz, answered by a running feed on a real nats-server, over real HTTP requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from schemas import subjects
from services.common.lifecycle import FatalError
from services.common.natsserver import free_port, is_listening
from services.connector_feed.http_api import seed_health
from services.connector_feed.service import run_feed
from services.connector_feed.settings import FeedSettings
from tests.helpers import eventually

SEED_CONNECTOR = {"connected", "last_ts", "queue_size", "reconnection_attempts", "connector_health"}
SEED_CONNECTOR_HEALTH = {"connected", "subscribed_trades", "subscribed_depth", "event_counter"}
SEED_RATES = {"per_minute_count", "per_second_rate", "queue_size"}


@asynccontextmanager
async def feed(settings: FeedSettings) -> AsyncIterator[asyncio.Task[int]]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_feed(settings, stop))
    try:
        yield task
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def feed_health(nc: Client) -> dict[str, Any]:
    """The feed's health reply, asked again while it is starting (no responders yet)."""
    for _ in range(200):
        try:
            reply = await nc.request(subjects.health("connector_feed"), b"", timeout=2)
        except NoRespondersError:
            await asyncio.sleep(0.02)
            continue
        body: dict[str, Any] = json.loads(reply.data)
        return body
    raise AssertionError("the feed never answered its health request")


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as reply:
        assert reply.content_type == "application/json"
        return reply.status, await reply.json()


@pytest.fixture(autouse=True)
def stub_environment(monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    """The stub reads its own section (SYMBOLS, STUB_*) from the environment."""
    monkeypatch.setenv("SYMBOLS", f"{unique},{unique}B")
    monkeypatch.setenv("STUB_TRADES_PER_S", "200")
    monkeypatch.setenv("STUB_DEPTH_PER_S", "50")


def stub_settings(nats_url: str, unique: str, port: int | None) -> FeedSettings:
    return FeedSettings(
        nats_url=nats_url,
        symbols=f"{unique},{unique}B",
        data_source="hft_connector",
        connector_name="stub",
        http_port=port,
    )


async def test_the_seed_commands_get_the_seed_shapes_from_the_same_health_code(
    nats_url: str, nc: Client, unique: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with feed(stub_settings(nats_url, unique, port)):
        await eventually(lambda: is_listening("127.0.0.1", port), 10)
        health: dict[str, Any] = {}

        async def fed() -> bool:
            _, body = await get(f"{base}/ws/health")
            health.update(body)
            return bool(body["connector"]["connector_health"]["event_counter"] > 20)

        for _ in range(200):
            if await fed():
                break
            await asyncio.sleep(0.02)
        _, metrics = await get(f"{base}/metrics")
        ready_status, ready = await get(f"{base}/readyz")
        live_status, live = await get(f"{base}/livez")
        _, full = await get(f"{base}/health")
        nats_health = await feed_health(nc)

    assert set(health) == {"connector"}
    connector = health["connector"]
    assert set(connector) == SEED_CONNECTOR
    assert connector["connected"] is True and connector["last_ts"].endswith("+00:00")
    assert type(connector["queue_size"]) is int and connector["reconnection_attempts"] == 0
    assert connector["connector_health"] == {
        "connected": True,
        "subscribed_trades": True,
        "subscribed_depth": True,
        "event_counter": connector["connector_health"]["event_counter"],
    }
    assert type(connector["connector_health"]["event_counter"]) is int
    assert set(metrics) == {"trades", "depth"}
    assert all(set(rates) == SEED_RATES for rates in metrics.values())
    assert metrics["trades"]["per_minute_count"] > 0 and metrics["depth"]["per_minute_count"] > 0
    assert (ready_status, ready) == (200, {"status": "ok", "reasons": []})
    assert (live_status, live) == (200, {"status": "alive"})
    assert full["service"] == nats_health["service"] == "connector_feed"
    assert set(full) == set(nats_health)  # the same report: NATS request/reply and HTTP
    assert full["instruments"] == nats_health["instruments"] == sorted([unique, f"{unique}B"])


async def test_http_is_off_unless_http_port_is_set_and_listens_on_loopback_by_default(
    nats_url: str, nc: Client, unique: str
) -> None:
    defaults = FeedSettings()

    async with feed(stub_settings(nats_url, unique, None)):
        off = await feed_health(nc)
    port = free_port()
    async with feed(stub_settings(nats_url, unique, port)):
        await eventually(lambda: is_listening("127.0.0.1", port), 10)
        await get(f"http://127.0.0.1:{port}/ws/health")
        on = await feed_health(nc)

    assert defaults.http_port is None
    assert defaults.http_host == "127.0.0.1"
    assert off["http"] is None  # running, with no HTTP to serve
    assert on["http"] == {"url": f"http://127.0.0.1:{port}", "requests": 1}


async def test_a_port_in_use_stops_the_feed_naming_http_port(nats_url: str, unique: str) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        with pytest.raises(FatalError, match=f"HTTP_PORT={port}: cannot listen there"):
            await asyncio.wait_for(run_feed(stub_settings(nats_url, unique, port), asyncio.Event()), 10)
    finally:
        taken.close()
        await taken.wait_closed()


def test_seed_health_fills_the_seed_fields_for_any_connector() -> None:
    """A Binance-style report (symbol lists), a seed connector that reports only ``connected``,
    and a connector out of reach."""
    listing = {"connected": True, "subscribed_trades": ["A"], "subscribed_depth": [], "event_counter": 7}
    unreachable = {
        "connected": False,
        "subscribed_trades": ["A"],
        "subscribed_depth": ["A"],
        "event_counter": 0,
    }
    section = {"last_ts": None, "queue_size": 0, "reconnection_attempts": 0}
    reports = [
        {**section, "connected": True, "queue_size": 3, "connector_health": listing},
        {**section, "connected": True, "connector_health": {"connected": True}},
        {**section, "connected": False, "reconnection_attempts": 4, "connector_health": unreachable},
        {"connected": True, "connector_health": {"error": "RuntimeError()"}},
    ]

    seeds = [seed_health({"connector": r}, events_received=11)["connector"] for r in reports]

    assert [s["connector_health"] for s in seeds] == [
        {"connected": True, "subscribed_trades": True, "subscribed_depth": False, "event_counter": 7},
        {"connected": True, "subscribed_trades": True, "subscribed_depth": True, "event_counter": 11},
        {"connected": False, "subscribed_trades": False, "subscribed_depth": False, "event_counter": 0},
        {"connected": True, "subscribed_trades": True, "subscribed_depth": True, "event_counter": 11},
    ]
    assert all(set(s) == SEED_CONNECTOR for s in seeds)
    assert [s["queue_size"] for s in seeds] == [3, 0, 0, 0]
    assert seeds[2]["reconnection_attempts"] == 4
