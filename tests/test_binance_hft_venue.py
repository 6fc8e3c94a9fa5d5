"""CONNECTOR_NAME=binance_hft against the fake Binance: published exactly like DATA_SOURCE=binance_ws.

Both sources are built by the factory from the environment, run against the same scripted venue
(a snapshot, diffs with a hole that forces a resync, trades with a duplicate, malformed frames)
and publish to a real nats-server; every trade and depth message, seq included, must be the same
(only ``feed_run`` and our receipt time ``ts_recv`` differ from run to run), and so must the book.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import DepthUpdate, subjects
from services.common.reconnect import ReconnectPolicy
from services.common.settings import load_settings
from services.connector_feed.connector import ConnectorCounters
from services.connector_feed.factory import build_connector
from services.connector_feed.settings import FeedSettings
from tests.fake_binance import STALE_DIFFS, FakeBinance, Market, agg_trade, book_scenario, spot_trade
from tests.helpers import collect, eventually, running_stream, without

ROOT = Path(__file__).resolve().parent.parent
TS = 1_770_000_000_000
GAP = 30
POLICY = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)


@dataclass
class Run:
    trades: list[dict[str, object]]
    depth: list[dict[str, object]]
    statuses: list[tuple[object, ...]]
    book: tuple[list[tuple[str, ...]], list[tuple[str, ...]], int | None, int]
    counters: ConnectorCounters
    health: dict[str, Any]


def _trade(market: Market, symbol: str, i: int) -> dict[str, Any]:
    price, qty, maker = f"6500{i % 10}.{i:08d}", f"0.{i + 1:03d}00000", i % 3 == 0
    if market == "spot":
        return spot_trade(symbol, 1000 + i, price, qty, maker, TS + i)
    return agg_trade(symbol, 1000 + i, price, qty, maker, TS + i, 10 * i, 10 * i + 2, futures=True)


def _env(monkeypatch: pytest.MonkeyPatch, venue: FakeBinance, market: Market, symbol: str) -> None:
    for name in list(os.environ):
        if name.startswith(("DATA_SOURCE", "CONNECTOR_", "BINANCE_", "RECONNECT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SYMBOLS", symbol)
    monkeypatch.setenv("BINANCE_MARKET", market)
    monkeypatch.setenv("BINANCE_WS_URL", venue.ws_url)
    monkeypatch.setenv("BINANCE_REST_URL", venue.rest_url)


async def _run(
    monkeypatch: pytest.MonkeyPatch, nc: Client, nats_url: str, market: Market, symbol: str, source: str
) -> Run:
    published = symbol + ("-PERP" if market == "usdm" else "")
    snapshot, diffs, _ = book_scenario(symbol, market, 80, seed=5, levels=60, gap_at=GAP)
    trade_stream = f"{symbol.lower()}@{'trade' if market == 'spot' else 'aggTrade'}"
    depth_stream = f"{symbol.lower()}@depth@100ms"
    trades, depth = (
        await collect(nc, subjects.trades(published)),
        await collect(nc, subjects.depth(published)),
    )
    statuses = await collect(nc, subjects.status(published))
    async with FakeBinance(market) as venue:
        venue.load_snapshot(snapshot)
        _env(monkeypatch, venue, market, symbol)
        if source == "binance_hft":
            monkeypatch.setenv("DATA_SOURCE", "hft_connector")
            monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
        connector, label = build_connector(load_settings(FeedSettings))
        async with running_stream(connector, nats_url, [symbol], POLICY, label) as stream:
            await venue.wait_for_subscribers([trade_stream, depth_stream])

            async def send(first: int, last: int) -> None:
                for i in range(first, last):
                    await venue.send(depth_stream, diffs[i])
                    await venue.send(trade_stream, _trade(market, symbol, i))

            def snapshots() -> int:
                return sum(1 for m in depth if json.loads(m.data)["is_snapshot"])

            # Step by step, so that what each (re)sync absorbs does not depend on timing: the stale
            # diffs and the one straddling the snapshot, then the sync, then one delta per diff.
            await send(0, STALE_DIFFS + 1)
            await eventually(lambda: snapshots() == 1)
            await send(STALE_DIFFS + 1, GAP)
            await venue.send(trade_stream, _trade(market, symbol, GAP - 1))  # a duplicate: kept once
            await venue.send_raw("not json")  # malformed: dropped, counted
            # The hole: the venue's book is now as of the first diff after it (a far-apart one
            # level a side, so that the diffs after it never cross it); the resync absorbs the
            # first diff after the hole (futures: U <= L <= u) or the one after (spot: U = L + 1).
            venue.set_snapshot(symbol, diffs[GAP]["u"], [["1.00000000", "1.0"]], [["99999.00000000", "1.0"]])
            resync_to = GAP + (2 if market == "spot" else 1)
            await send(GAP, resync_to)
            await eventually(lambda: snapshots() == 2)
            await send(resync_to, len(diffs))
            await eventually(
                lambda: (
                    len(trades) == len(diffs)
                    and json.loads(depth[-1].data)["last_update_id"] == diffs[-1]["u"]
                ),
                timeout_s=15,
            )
            held = stream.book_copy(published)
            assert held is not None
            copy, seq = held
            bids, asks = await copy.sorted(None)
            counters = stream.connector.counters()
            health = stream.connector.health()
    return Run(
        [without(m.data, "feed_run", "ts_recv") for m in trades],
        [without(m.data, "feed_run", "ts_recv") for m in depth],
        [_status(m) for m in statuses],
        ([tuple(b) for b in bids], [tuple(a) for a in asks], copy.last_update_id, seq),  # pairs, any form
        counters,
        health,
    )


def _status(msg: Msg) -> tuple[object, ...]:
    status = json.loads(msg.data)
    return status["stream"], status["state"], status["reason"]


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_binance_hft_publishes_exactly_what_binance_ws_publishes(
    monkeypatch: pytest.MonkeyPatch, nc: Client, nats_url: str, unique: str, market: Market
) -> None:
    ws = await _run(monkeypatch, nc, nats_url, market, unique, "binance_ws")
    hft = await _run(monkeypatch, nc, nats_url, market, unique, "binance_hft")

    assert hft.trades == ws.trades and hft.depth == ws.depth
    assert [t["seq"] for t in hft.trades] == list(range(1, len(hft.trades) + 1))
    assert [d["seq"] for d in hft.depth] == list(range(1, len(hft.depth) + 1))
    assert sum(1 for d in hft.depth if d["is_snapshot"]) == 2  # the first one, and after the hole
    assert isinstance(hft.trades[0]["price"], str) and hft.trades[1]["price"] == "65001.00000001"
    assert hft.book == ws.book and len(hft.book[0]) > 0  # the book, level for level, and its seq
    assert hft.statuses == ws.statuses and ("depth", "resyncing") in [s[:2] for s in hft.statuses]
    published = unique + ("-PERP" if market == "usdm" else "")
    assert hft.counters.gaps == ws.counters.gaps == {published: 1}
    assert hft.counters.resyncs == ws.counters.resyncs == {published: 2}
    assert hft.counters.errors == {**ws.counters.errors, "connection": 0}
    assert ws.counters.errors["malformed_not_json"] == {"spot": 1, "usdm": 2}[market]  # one per connection
    assert hft.health["paper_trading"] is True and hft.health["handoff"]["received"] > 0


@pytest.mark.parametrize("source", ["binance_hft", "binance_ws"])
async def test_binance_hft_gives_up_like_binance_ws(
    monkeypatch: pytest.MonkeyPatch, nats_url: str, nc: Client, unique: str, source: str
) -> None:
    statuses = await collect(nc, subjects.status(unique))
    async with FakeBinance("spot") as venue:
        _env(monkeypatch, venue, "spot", unique)
    # The venue is gone: every connection attempt is refused.
    if source == "binance_hft":
        monkeypatch.setenv("DATA_SOURCE", "hft_connector")
        monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
    else:
        monkeypatch.setenv("DATA_SOURCE", "binance_ws")
    monkeypatch.setenv("RECONNECT_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RECONNECT_INITIAL_S", "0.01")
    connector, label = build_connector(load_settings(FeedSettings))

    async with running_stream(connector, nats_url, [unique], POLICY, label) as stream:
        await eventually(lambda: stream.gave_up and bool(statuses))

    down = json.loads(statuses[-1].data)
    assert (down["state"], down["stream"]) == ("down", "all")
    assert "no connection after 1 attempts" in down["reason"]


# ---- the seed guide's configuration, as written, in a real process --------------------------------


async def test_the_seed_guides_dotenv_runs_the_feed_on_binance(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    snapshot, diffs, expected = book_scenario(unique, "spot", 20, seed=9, levels=20)
    assert expected is not None
    trades, depth = await collect(nc, subjects.trades(unique)), await collect(nc, subjects.depth(unique))
    (tmp_path / ".env").write_text(
        "# Data source selection (default: binance_ws)\n"
        "DATA_SOURCE=hft_connector\n\n"
        "# Connector-specific settings (used when DATA_SOURCE=hft_connector)\n"
        "CONNECTOR_NAME=binance_hft\n"
        "CONNECTOR_POLL_INTERVAL_MS=100\n"
        "CONNECTOR_PAPER_TRADING=true\n"
    )
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DATA_SOURCE", "CONNECTOR_", "BINANCE_"))
        }
        env.update(
            PYTHONPATH=str(ROOT),
            NATS_URL=nats_url,
            SYMBOLS=unique,
            BINANCE_WS_URL=venue.ws_url,
            BINANCE_REST_URL=venue.rest_url,
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.connector_feed",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            name = f"{unique.lower()}@trade"
            await venue.wait_for_subscribers([name, f"{unique.lower()}@depth@100ms"], timeout=20)
            for diff in diffs:
                await venue.send(f"{unique.lower()}@depth@100ms", diff)
            await venue.send(name, spot_trade(unique, 42, "65000.10000000", "0.00100000", True, TS))
            await eventually(
                lambda: (
                    bool(trades and depth)
                    and json.loads(depth[-1].data)["last_update_id"] == expected.last_update_id
                ),
                timeout_s=15,
            )
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 15)

    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 0, err
    trade = json.loads(trades[0].data)
    assert (trade["exchange"], trade["price"], trade["qty"], trade["side"], trade["trade_id"]) == (
        "binance",
        "65000.10000000",
        "0.00100000",
        "sell",
        42,
    )
    assert DepthUpdate.model_validate_json(depth[0].data).is_snapshot
    events = [json.loads(line) for line in out.splitlines()]
    started = next(e for e in events if e["event"] == "service_started")
    assert (started["data_source"], started["connector"]) == ("hft_connector", "binance_hft")


@pytest.mark.parametrize("source", ["binance_ws", "binance_hft"])
async def test_health_is_not_connected_while_the_venue_is_away_either_way(
    monkeypatch: pytest.MonkeyPatch, nats_url: str, unique: str, source: str
) -> None:
    async with FakeBinance("spot") as venue:
        venue.set_snapshot(unique, 100, [["1.00", "1"]], [["2.00", "1"]])
        _env(monkeypatch, venue, "spot", unique)
        if source == "binance_hft":
            monkeypatch.setenv("DATA_SOURCE", "hft_connector")
            monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
        connector, label = build_connector(load_settings(FeedSettings))
        async with running_stream(connector, nats_url, [unique], POLICY, label) as stream:
            await venue.wait_for_subscribers([f"{unique.lower()}@trade"])
            await eventually(lambda: stream.connected)
            dropped = await venue.drop_connections()
            await eventually(lambda: not stream.connected)  # the reconnect waits >= 0.25 s
            await eventually(lambda: stream.connected, timeout_s=10)
            reconnects = stream.connector.counters().reconnects

    assert (dropped, reconnects) == (1, 1)
