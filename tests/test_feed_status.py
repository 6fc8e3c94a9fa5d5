"""Why a feed is down, and the current state of every symbol for a subscriber that joins late.

A running feed on a real nats-server: a late subscriber asks ``md.status`` and gets every symbol's
state; a venue whose host does not resolve, or that refuses the websocket upgrade, is named in
health's reasons, in the symbols' ``md.<SYMBOL>.status`` and in ``/readyz``; a seed-style
connector that cannot connect says why too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import nats.errors
import pytest
from aiohttp import web
from nats.aio.client import Client

from schemas import FeedStatus, Status, subjects
from services.common.natsserver import free_port
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.service import run_feed
from services.connector_feed.settings import FeedSettings
from tests.fakes import ScriptedConnector
from tests.helpers import collect, eventually, running_stream

FEED_STATUS_SCHEMA = json.loads(
    (Path(__file__).parent.parent / "schemas" / "json" / "feed_status.json").read_text()
)
RESTRICTED = "Service unavailable from a restricted location according to 'b. Eligibility'."


@asynccontextmanager
async def feed(settings: FeedSettings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_feed(settings, stop))
    try:
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def gather(nc: Client, subject: str, wait_s: float = 0.2) -> list[dict[str, Any]]:
    """Every reply to one request until ``wait_s`` passes without one (a no-responders notice,
    while the feed is starting, is no reply)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    replies = []
    try:
        while True:
            msg = await sub.next_msg(timeout=wait_s)
            if msg.data:
                replies.append(json.loads(msg.data))
    except nats.errors.TimeoutError:
        pass
    await sub.unsubscribe()
    return replies


async def states_of(nc: Client, symbols: set[str]) -> dict[str, Any]:
    """The reply to ``md.status`` of the feed that publishes ``symbols`` (every feed answers)."""
    for _ in range(100):
        for reply in await gather(nc, subjects.FEED_STATUS):
            if {s["symbol"] for s in reply["statuses"]} == symbols:
                return reply
    raise AssertionError(f"no feed answered md.status with {symbols}")


async def health(nc: Client) -> dict[str, Any]:
    replies = await gather(nc, subjects.health("connector_feed"))
    return replies[0] if replies else {"status": "no reply", "reasons": []}


async def test_a_late_subscriber_gets_the_current_state_of_every_symbol(
    nats_url: str, nc: Client, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbols = {unique, f"{unique}B"}
    monkeypatch.setenv("SYMBOLS", ",".join(sorted(symbols)))
    settings = FeedSettings(nats_url=nats_url, data_source="hft_connector", connector_name="stub")
    async with feed(settings):
        early = await states_of(nc, symbols)  # the feed is running before anyone listens
        late_changes = await collect(nc, "md.*.status")
        reply = await states_of(nc, symbols)

    jsonschema.validate(reply, FEED_STATUS_SCHEMA)
    current = FeedStatus.model_validate(reply)
    assert current.exchange == "stub" and current.feed_run == early["feed_run"]
    assert [(s.symbol, s.state, s.stream) for s in current.statuses] == [
        (symbol, "live", "all") for symbol in sorted(symbols)
    ]
    assert all(s.ts == current.ts for s in current.statuses)
    assert [m for m in late_changes if m.subject.split(".")[1] in symbols] == []  # nothing changed meanwhile


async def test_an_unreachable_venue_is_named_in_health_status_and_readyz(
    nats_url: str, nc: Client, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYMBOLS", unique)
    monkeypatch.setenv("BINANCE_WS_URL", "wss://nosuch.invalid:9443")
    monkeypatch.setenv("BINANCE_REST_URL", "https://nosuch.invalid")
    port = free_port()
    changes = await collect(nc, subjects.status(unique))
    settings = FeedSettings(nats_url=nats_url, data_source="binance_ws", http_port=port)
    async with feed(settings):
        await eventually(lambda: len(changes) >= 1, 10)
        reply = await states_of(nc, {unique})
        report = await health(nc)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as r:
            ready_status, ready = r.status, await r.json()

    cause = "cannot resolve nosuch.invalid ("
    first = Status.model_validate_json(changes[0].data)
    assert (first.state, first.stream) == ("reconnecting", "all")
    assert first.reason.startswith(f"cannot connect: {cause}")
    (state,) = FeedStatus.model_validate(reply).statuses
    assert state.state == "reconnecting" and cause in state.reason
    assert report["status"] == "down"
    assert report["reasons"][0].startswith(f"not connected: {cause}")
    assert ready_status == 503 and ready["status"] == "down" and cause in ready["reasons"][0]


@pytest.fixture
async def blocked_venue() -> AsyncIterator[str]:
    """A venue that answers every websocket upgrade as Binance does from a restricted location."""

    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"code": 0, "msg": RESTRICTED}, status=451)

    app = web.Application()
    app.router.add_get("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_venues_own_refusal_is_the_cause(
    nats_url: str, nc: Client, unique: str, monkeypatch: pytest.MonkeyPatch, blocked_venue: str
) -> None:
    monkeypatch.setenv("SYMBOLS", unique)
    monkeypatch.setenv("BINANCE_WS_URL", f"ws://{blocked_venue}")
    monkeypatch.setenv("BINANCE_REST_URL", f"http://{blocked_venue}")
    settings = FeedSettings(nats_url=nats_url, data_source="binance_ws")
    async with feed(settings):
        report: dict[str, Any] = {}

        async def explained() -> bool:
            report.update(await health(nc))
            return "HTTP 451" in " ".join(report.get("reasons", []))

        for _ in range(100):
            if await explained():
                break

    assert report["status"] == "down"
    cause = f"{blocked_venue} answered the websocket upgrade with HTTP 451: {RESTRICTED}"
    assert report["reasons"] == [  # the cause, and what it costs: each symbol's state
        f"not connected: {cause}",
        f"{unique} reconnecting: cannot connect: {cause}",
    ]


async def test_a_seed_connector_that_cannot_connect_says_why(nats_url: str, nc: Client, unique: str) -> None:
    connector = ScriptedConnector(fail_connects=1000)
    changes = await collect(nc, subjects.status(unique))
    slow = ReconnectPolicy(initial_s=0.05, max_s=0.05, max_attempts=0, reset_after_s=60)

    async with running_stream(connector, nats_url, [unique], slow) as stream:
        await eventually(lambda: connector.connect_calls >= 3 and len(changes) >= 1)
        cause = stream.connector.last_error()

    statuses = [Status.model_validate_json(m.data) for m in changes]
    assert cause is not None and cause.startswith("ConnectionRefusedError: scripted failure ")
    assert [(s.state, s.reason.startswith("cannot connect: ConnectionRefusedError")) for s in statuses] == [
        ("reconnecting", True)
    ]  # once, not at every attempt
