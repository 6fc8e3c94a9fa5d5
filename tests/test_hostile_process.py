"""Hostile input at process level: real connector_feed, strategy_engine and context processes.

connector_feed reads a fake Binance that mixes valid frames with a few hundred hostile ones; the
consumers are sent hostile messages on the very subjects they read. Afterwards every process is
alive on the same connections, every valid event was published, the books equal the reference,
and every rejection was counted, by reason, where an operator looks (health).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.client import Client

from schemas import DepthUpdate, TradeTick, subjects
from services.common.book import OrderBook, price_key
from services.common.bus import settled
from tests.fake_binance import FakeBinance, book_scenario, spot_trade
from tests.helpers import collect, eventually
from tests.hostile import hostile_frames, hostile_messages

ROOT = Path(__file__).parent.parent
TS = 1_770_000_000_000
ROUNDS = 10  # hostile frames sent: ROUNDS x len(hostile_frames) (300)
MAX_LOG_LINE = 4096


@contextmanager
def processes(env: dict[str, str], logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("context", "strategy_engine", "connector_feed"):
            with (logs / f"{name}.log").open("wb") as out:
                running[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT, stdout=out, stderr=out
                )
        yield running
    finally:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(timeout=15) for name, process in running.items()}
        assert codes == dict.fromkeys(running, 0)


async def _health(nc: Client, service: str) -> dict[str, Any]:
    reply = await nc.request(subjects.health(service), b"", timeout=2)
    return dict(orjson.loads(reply.data))


def _book(messages: list[Any]) -> OrderBook:
    book = OrderBook()
    for message in messages:
        update = DepthUpdate.model_validate_json(message.data)
        levels = [[(format(p, "f"), format(q, "f")) for p, q in side] for side in (update.bids, update.asks)]
        if update.is_snapshot:
            book.reset(levels[0], levels[1], update.last_update_id)
        else:
            book.apply(levels[0], levels[1], update.last_update_id)
    return book


def _as_dict(levels: Sequence[Sequence[str]]) -> dict[str, str]:
    return {price_key(p): format(Decimal(q), "f") for p, q in levels}


async def test_hostile_input_costs_no_process_no_connection_and_no_valid_event(
    nats_url: str, unique: str, tmp_path: Path
) -> None:
    symbol = unique
    snapshot, diffs, expected = book_scenario(symbol, "spot", 80, seed=11, levels=30)
    assert expected is not None
    hostile = hostile_frames(symbol) * ROUNDS
    trades_stream, depth_stream = f"{symbol.lower()}@trade", f"{symbol.lower()}@depth@100ms"
    nc = await nats.connect(nats_url)
    try:
        async with FakeBinance("spot") as venue:
            venue.load_snapshot(snapshot)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BINANCE_", "STUB_"))},
                "NATS_URL": nats_url,
                "SYMBOLS": symbol,
                "DATA_SOURCE": "binance_ws",
                "BINANCE_WS_URL": venue.ws_url,
                "BINANCE_REST_URL": venue.rest_url,
                "VWAP_MIN_TRADES": "2",
                "PYTHONPATH": str(ROOT),
            }
            published_trades = await collect(nc, subjects.trades(symbol))
            published_depth = await collect(nc, subjects.depth(symbol))
            with processes(env, tmp_path) as running:
                await venue.wait_for_subscribers([trades_stream, depth_stream])
                await _wait_for_consumers(nc)
                # Phase 1: the venue mixes valid frames with hostile ones.
                valid_ids = list(range(1000, 1000 + len(diffs) * 2))
                hostile_iter = iter(hostile)
                for i, trade_id in enumerate(valid_ids):
                    price = f"{50_000 + trade_id % 7}.{trade_id % 100:02d}"
                    await venue.send(
                        trades_stream, spot_trade(symbol, trade_id, price, "0.5", i % 2 == 0, TS + i)
                    )
                    if i % 2 == 0:
                        await venue.send(depth_stream, diffs[i // 2])
                    for _ in range(len(hostile) // len(valid_ids) + 1):
                        frame = next(hostile_iter, None)
                        if frame is not None:
                            await venue.send_raw(frame[1])
                await eventually(lambda: len(published_trades) == len(valid_ids), timeout_s=20)
                await eventually(lambda: _book(published_depth).last_update_id == expected.last_update_id, 10)

                # Phase 2: hostile messages straight onto the consumers' subjects, then valid ones.
                valid_trade, valid_depth = published_trades[0].data, published_depth[-1].data
                sent = hostile_messages(symbol, valid_trade, valid_depth)
                for kind, _, payload in sent:
                    await nc.publish(
                        subjects.trades(symbol) if kind == "trade" else subjects.depth(symbol), payload
                    )
                await settled(nc)
                for i in range(5):
                    await venue.send(
                        trades_stream,
                        spot_trade(symbol, valid_ids[-1] + 1 + i, "50001.00", "1.0", False, TS + 10**6),
                    )
                total_valid = len(valid_ids) + 5
                # The consumers also received the hostile messages published above; count the feed's own.
                await eventually(lambda: _from_feed(published_trades) == total_valid, timeout_s=10)

                # Requests of any shape: every one answered, none changes anything.
                odd = [
                    await nc.request(subject, payload, timeout=2, headers=headers)
                    for subject, payload, headers in (
                        ("context.NOPE.snapshot", b"\xff" * 1000, None),
                        (subjects.context_snapshot(symbol), b"{bad", {"traceparent": "garbage"}),
                        (subjects.health("context"), b"x" * 100_000, None),
                        (subjects.health("strategy_engine"), b"[]", {"Nats-Service-Error": "forged"}),
                    )
                ]
                feed = await _health(nc, "connector_feed")
                context = await _health(nc, "context")
                engine = await _health(nc, "strategy_engine")
                snapshot_reply = orjson.loads(
                    (await nc.request(subjects.context_snapshot(symbol), b"", timeout=2)).data
                )
                alive = {name: p.poll() is None for name, p in running.items()}
    finally:
        await nc.drain()

    # Every process alive, on the same connections.
    assert alive == dict.fromkeys(alive, True)
    assert len(venue.connections) == 1  # the feed never reconnected to the venue
    for health in (feed, context, engine):
        assert health["nats"]["reconnects"] == 0 and health["nats"]["disconnects"] == 0
    assert feed["connector"]["reconnection_attempts"] == 0

    # Every valid event was published, in order, and nothing else.
    ids = [TradeTick.model_validate_json(m.data).trade_id for m in published_trades if _is_feed(m)]
    assert ids == valid_ids + [valid_ids[-1] + 1 + i for i in range(5)]
    book = _book([m for m in published_depth if _is_feed(m)])
    assert book.last_update_id == expected.last_update_id
    assert _as_dict(book.bids()) == _as_dict(list(expected.bids.items()))
    assert _as_dict(book.asks()) == _as_dict(list(expected.asks.items()))

    # The counters match what was sent.
    assert feed["connector"]["connector_health"]["malformed"] == dict(Counter(r for r, _ in hostile))
    assert feed["rejected"] == {}
    expected_rejections = dict(Counter(reason for _, reason, _ in sent))
    assert context["rejected"] == expected_rejections
    assert engine["rejected"] == expected_rejections
    assert context["consumed"]["trade"] == total_valid
    assert engine["consumed"]["trade"] == total_valid

    assert (odd[0].headers or {}).get("Nats-Service-Error-Code") == "404"
    assert orjson.loads(odd[1].data)["symbol"] == symbol
    assert orjson.loads(odd[2].data)["service"] == "context"
    assert orjson.loads(odd[3].data)["service"] == "strategy_engine"

    # The consumers' state is exactly that of the valid data.
    assert snapshot_reply["trade_count"] == total_valid
    assert snapshot_reply["book_synced"] is True
    assert snapshot_reply["book_update_id"] == expected.last_update_id
    assert Decimal(snapshot_reply["best_bid"]) == max(Decimal(p) for p in expected.bids)
    assert Decimal(snapshot_reply["best_ask"]) == min(Decimal(p) for p in expected.asks)
    assert context["status"] == "ok", context["reasons"]

    # No log line copies hostile input whole (a 1 MB message, a 2 MB frame).
    for name in ("connector_feed", "strategy_engine", "context"):
        lines = (tmp_path / f"{name}.log").read_bytes().splitlines()
        assert max(len(line) for line in lines) < MAX_LOG_LINE, name


def _is_feed(message: Any) -> bool:
    """Messages the feed published (the test's own hostile ones fail the contract or the symbol)."""
    try:
        model = TradeTick if message.subject.endswith(".trades") else DepthUpdate
        update = model.model_validate_json(message.data)
    except ValueError:
        return False
    return update.symbol == message.subject.split(".")[1] and update.ts_event < 4_000_000_000_000_000_000


def _from_feed(messages: list[Any]) -> int:
    return sum(1 for m in messages if _is_feed(m))


async def _wait_for_consumers(nc: Client) -> None:
    for service in ("context", "strategy_engine", "connector_feed"):
        for _ in range(100):
            try:
                await _health(nc, service)
                break
            except (TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)
