from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from nats.aio.client import Client

from schemas import DepthUpdate, TradeTick, subjects
from services.common.bus import Bus
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.connector import ConnectorGaveUp, ConnectorWrapper, FeedSink, NativeConnector
from services.connector_feed.events import Trade
from services.connector_feed.stream import HFTConnectorStream
from services.connector_feed.stub import StubbedConnector, StubSettings
from tests.fakes import ScriptedConnector
from tests.helpers import collect, eventually, native

ROOT = Path(__file__).parent.parent
SCHEMAS = {
    stem: json.loads((ROOT / "schemas" / "json" / f"{stem}.json").read_text())
    for stem in ("trade_tick", "depth_update")
}
FAST = ReconnectPolicy(initial_s=0.001, max_s=0.004, max_attempts=3, reset_after_s=60)
MS = 1_700_000_000_000


def _trade(i: int, symbol: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "trade",
        "symbol": symbol,
        "timestamp": MS + i,
        "price": f"{100 + i}.25",
        "qty": "0.5",
        "side": "buy",
        "is_buyer_maker": False,
        "id": i,
        **extra,
    }


async def _stream(
    nats_url: str,
    connector: ConnectorWrapper | NativeConnector,
    symbols: list[str],
    policy: ReconnectPolicy = FAST,
    max_queue: int = 1000,
) -> tuple[HFTConnectorStream, Bus]:
    bus = await Bus.connect(nats_url, "test-feed")
    return HFTConnectorStream(native(connector, symbols, policy), bus, max_queue), bus


async def test_stub_feed_publishes_contracts_that_match_the_json_schemas(
    nats_url: str, nc: Client, unique: str
) -> None:
    settings = StubSettings(symbols=unique, stub_seed=1, stub_trades_per_s=200, stub_depth_per_s=50)
    trades = await collect(nc, subjects.trades(unique))
    depth = await collect(nc, subjects.depth(unique))
    stream, bus = await _stream(nats_url, StubbedConnector(settings), [unique])

    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(trades) >= 20 and len(depth) >= 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await stream.close()
    await bus.drain()

    for msg in trades:
        jsonschema.validate(json.loads(msg.data), SCHEMAS["trade_tick"])
        tick = TradeTick.model_validate_json(msg.data)
        assert (tick.exchange, tick.symbol) == ("stub", unique)
    for msg in depth:
        jsonschema.validate(json.loads(msg.data), SCHEMAS["depth_update"])
        assert DepthUpdate.model_validate_json(msg.data).is_snapshot
    ids = [TradeTick.model_validate_json(m.data).trade_id for m in trades]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert stream.connector_section()["connected"] is False
    assert stream.metrics()["trades"]["per_minute_count"] >= 20


async def test_every_event_published_once_and_close_flushes_the_queue(
    nats_url: str, nc: Client, unique: str
) -> None:
    connector = ScriptedConnector(events=[_trade(i, unique) for i in range(1, 501)])
    trades = await collect(nc, subjects.trades(unique))
    stream, bus = await _stream(nats_url, connector, [unique])

    task = asyncio.create_task(stream.run())
    await eventually(lambda: stream.received["trade"] == 500)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await stream.close()
    await bus.drain()
    await eventually(lambda: len(trades) == 500)

    assert [json.loads(m.data)["trade_id"] for m in trades] == list(range(1, 501))
    assert json.loads(trades[0].data)["price"] == "101.25"
    assert connector.subscriptions == [("trades", unique), ("depth", unique)]


async def test_bad_events_are_counted_and_the_stream_carries_on(
    nats_url: str, nc: Client, unique: str
) -> None:
    events = [
        _trade(1, unique),
        _trade(2, unique, price=float("nan")),
        {"type": "trade", "symbol": unique},
        _trade(3, unique, side="sell"),  # contradicts is_buyer_maker=False
        {"type": "depth", "symbol": unique, "timestamp": MS, "bids": "x", "asks": [], "last_update_id": 1},
        {"type": "candle"},
        "garbage",
        _trade(4, unique),
    ]
    trades = await collect(nc, subjects.trades(unique))
    stream, bus = await _stream(nats_url, ScriptedConnector(events=events), [unique])

    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(trades) == 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.drain()

    assert [json.loads(m.data)["trade_id"] for m in trades] == [1, 4]
    assert stream.rejected == {
        "nan_price": 1,
        "missing_field": 1,
        "side_contradiction": 1,
        "wrong_type": 1,
        "unknown_type": 1,
        "not_a_dict": 1,
    }


async def test_reconnects_after_failures_and_a_dropped_connection(
    nats_url: str, nc: Client, unique: str
) -> None:
    connector = ScriptedConnector(
        events=[_trade(i, unique) for i in range(1, 11)], fail_connects=2, drop_after=5
    )
    trades = await collect(nc, subjects.trades(unique))
    stream, bus = await _stream(nats_url, connector, [unique])

    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(trades) == 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.drain()

    assert connector.connect_calls == 4  # 2 failures, 1 success, 1 after the drop
    assert stream.connector.counters().reconnects == 3
    assert [json.loads(m.data)["trade_id"] for m in trades] == list(range(1, 11))


async def test_gives_up_after_the_last_attempt(nats_url: str) -> None:
    connector = ScriptedConnector(fail_connects=100)
    stream, bus = await _stream(nats_url, connector, ["X"])

    with pytest.raises(ConnectorGaveUp):
        await asyncio.wait_for(stream.run(), 5)
    await bus.drain()

    assert connector.connect_calls == 4  # the first try + 3 attempts
    assert stream.gave_up


def _env(nats_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUB_", "RECONNECT_", "CONNECTOR_"))}
    env.update({"NATS_URL": nats_url, "DATA_SOURCE": "hft_connector", "PYTHONPATH": str(ROOT), **extra})
    return env


def test_process_exits_non_zero_with_a_clear_message_when_the_connector_gives_up(nats_url: str) -> None:
    env = _env(
        nats_url,
        CONNECTOR_NAME="tests.fakes:NeverConnects",
        RECONNECT_INITIAL_S="0.01",
        RECONNECT_MAX_S="0.02",
    )

    done = subprocess.run(
        [sys.executable, "-m", "services.connector_feed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )

    assert done.returncode == 1
    assert "did not reconnect after 5 attempts" in done.stderr
    events = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert events.count("connector_connection_error") == 6
    assert "connector_gave_up" in events


def test_process_stops_cleanly_on_sigterm(nats_url: str, unique: str) -> None:
    env = _env(nats_url, CONNECTOR_NAME="stub", SYMBOLS=unique)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.connector_feed"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # wait until it is running
        if json.loads(line)["event"] == "connector_connected":
            break

    process.terminate()
    out, _ = process.communicate(timeout=10)

    assert process.returncode == 0
    assert '"event":"service_stopped"' in out


@pytest.mark.parametrize(
    ("env_extra", "message"),
    [
        ({"DATA_SOURCE": "binance_ws", "BINANCE_MARKET": "coinm"}, "BINANCE_MARKET"),
        ({"DATA_SOURCE": "binance_ws", "BINANCE_DEPTH_LIMIT": "7"}, "BINANCE_DEPTH_LIMIT"),
        ({"CONNECTOR_NAME": "nosuch.module:Thing"}, "cannot import connector module"),
        ({"CONNECTOR_NAME": "kraken"}, "unknown connector 'kraken'"),
        ({"MAX_QUEUE": "-3"}, "MAX_QUEUE"),
    ],
)
def test_process_refuses_bad_configuration(nats_url: str, env_extra: dict[str, str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.connector_feed"],
        env=_env(nats_url, **env_extra),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )

    assert done.returncode != 0
    assert message in done.stderr


class _FrameCallbackConnector(NativeConnector):
    """Pushes batches the way picows' frame callback does: ``sink.put`` (no await), then waits for
    room only when the stream says it is full."""

    exchange = "stub"

    def __init__(self, symbol: str, batches: list[list[Trade]]) -> None:
        self.symbol = symbol
        self.batches = batches
        self.inline: list[int] = []  # trades published by the time each put returned

    def instruments(self) -> list[str]:
        return [self.symbol]

    def is_connected(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"connected": True}

    async def run(self, sink: FeedSink) -> None:
        stream = cast(HFTConnectorStream, sink)
        for batch in self.batches:
            room = sink.put(batch)
            self.inline.append(stream.lanes.trades[self.symbol].published)
            if not room:
                await sink.room()
        await asyncio.Event().wait()


def _trades(symbol: str, first: int, n: int) -> list[Trade]:
    return [
        Trade("stub", symbol, i, "100.5", "0.25", "buy", False, MS * 1_000_000 + i, MS * 1_000_000 + i)
        for i in range(first, first + n)
    ]


@pytest.mark.parametrize("nats_buffer", ["default", "tiny"])
async def test_a_frame_callback_publishes_inline_and_a_full_nats_buffer_loses_nothing(
    nats_url: str, nc: Client, unique: str, nats_buffer: str
) -> None:
    """``put`` publishes in the caller's turn (no task, no loop turn). When nats-py must wait for
    its flush (a buffer smaller than one batch here), the publish it started finishes in the drain
    task and the rest follows it: every trade once, in order, in ``seq`` order, counted."""
    batches = [_trades(unique, 1 + 20 * k, 20) for k in range(150)]
    connector = _FrameCallbackConnector(unique, batches)
    trades = await collect(nc, subjects.trades(unique))
    bus = await Bus.connect(nats_url, "test-feed")
    if nats_buffer == "tiny":
        bus.nc._max_pending_size = 1024  # nats-py's force-flush threshold: ~4 trades
    stream = HFTConnectorStream(connector, bus, max_queue=100)

    task = asyncio.create_task(stream.run())
    await eventually(lambda: stream.lanes.trades[unique].published == 3000, timeout_s=20)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await stream.close()
    await bus.drain()
    await eventually(lambda: len(trades) == 3000, timeout_s=20)

    bodies = [json.loads(m.data) for m in trades]
    assert [b["trade_id"] for b in bodies] == list(range(1, 3001))
    assert [b["seq"] for b in bodies] == list(range(1, 3001))
    assert (stream.dropped.trades, stream.dropped.by_reason) == (0, {})
    if nats_buffer == "default":  # nothing waited: each put returned with its batch published (the
        # sampled first trade, with its lag header, too)
        assert connector.inline == [20 * (k + 1) for k in range(150)]
    else:  # some publishes waited for nats-py's flusher: their batches went on in the drain task
        assert connector.inline != [20 * (k + 1) for k in range(150)]
