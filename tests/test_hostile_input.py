"""Each crash of the hardening review, as a test: bad input is refused and counted, never fatal.

(The process-level version, with real processes and a few hundred hostile frames, is
``test_hostile_process.py``; arbitrary input is ``test_properties.py``.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from nats.aio.client import Client

from schemas import DepthUpdate, Signal, Status, TradeTick, rules, subjects
from schemas.wire import TradeMsg, decode_depth, decode_trade
from services.common.bus import Bus
from services.common.logging import LogSampler
from services.common.reconnect import ReconnectPolicy
from services.common.vwap import RollingVwap
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.connector import Delivered
from services.connector_feed.events import Trade
from services.connector_feed.normalize import EventRejected, Normalizer
from services.connector_feed.service import feed_health
from services.connector_feed.stream import HFTConnectorStream
from services.context.state import SymbolContext
from services.strategy_engine.runner import StrategyRunner
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.strategy import Strategy
from tests.fake_binance import FakeBinance, book_scenario
from tests.fakes import ScriptedConnector
from tests.helpers import collect, eventually, native, running_stream

ROOT = Path(__file__).parent.parent
RECV = 1_770_000_000_000_000_000
QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)


def _seed_trade(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "trade",
        "symbol": "BTCUSDT",
        "timestamp": 1_770_000_000_000,
        "price": "1.5",
        "qty": "2",
        "side": "buy",
        "is_buyer_maker": False,
        "id": 1,
    }
    event.update(fields)
    return event


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_seed_trade(symbol=["BTCUSDT"]), "wrong_type"),  # unhashable: once a TypeError in a dict key
        (_seed_trade(symbol={"a": 1}), "wrong_type"),
        (_seed_trade(symbol="ETHUSDT"), "unknown_symbol"),  # a symbol this feed does not publish
        (_seed_trade(timestamp=datetime(1969, 12, 31, tzinfo=UTC)), "invalid_timestamp"),
        (_seed_trade(timestamp=datetime(9999, 1, 1)), "invalid_timestamp"),  # beyond int64 ns
        (_seed_trade(timestamp=-5), "invalid_timestamp"),
        (_seed_trade(id=-1), "invalid_id"),
        (_seed_trade(id=2**64), "invalid_id"),
        (_seed_trade(price="9" * 10_000), "too_long_price"),
        (_seed_trade(price="1e400"), "invalid_price"),
        (_seed_trade(price=Decimal("1e400")), "too_long_price"),
        (_seed_trade(qty=Decimal("1E-50")), "too_long_qty"),
    ],
)
def test_connector_events_that_once_crashed_the_feed_are_refused(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(EventRejected) as refused:
        Normalizer("stub", ["BTCUSDT"]).normalize(event, RECV)

    assert refused.value.reason == reason
    assert len(refused.value.detail) < 300  # bounded: never the whole input


def test_a_dict_subclass_that_explodes_is_one_rejected_event() -> None:
    class Hostile(dict[str, Any]):
        def get(self, *_: Any) -> Any:
            raise RuntimeError("boom")

    with pytest.raises(EventRejected) as refused:
        Normalizer("stub", ["BTCUSDT"]).normalize(Hostile(type="trade"), RECV)

    assert refused.value.reason == "malformed"


async def test_a_connector_inventing_symbols_and_statuses_publishes_only_its_own(
    nats_url: str, nc: Client, unique: str
) -> None:
    forged = Status(exchange="stub", symbol="FORGED", stream="all", state="down", reason="x", ts=1)
    own = Status(exchange="stub", symbol=unique, stream="all", state="live", reason="ok", ts=1)
    events = [
        _seed_trade(symbol="FORGED", id=1),
        forged,
        _seed_trade(symbol=unique, id=2),
        _seed_trade(symbol="BTC.USDT", id=3),
        own,
        _seed_trade(symbol=unique, id=4),
    ]
    trades = await collect(nc, "md.*.trades")
    statuses = await collect(nc, "md.*.status")
    async with running_stream(ScriptedConnector(events=events), nats_url, [unique], QUICK) as stream:
        await eventually(lambda: len(trades) == 2 and len(statuses) == 1)
        await asyncio.sleep(0.05)

    assert [m.subject for m in trades] == [subjects.trades(unique)] * 2
    assert [m.subject for m in statuses] == [subjects.status(unique)]
    assert stream.rejected == {"unknown_symbol": 2, "invalid_symbol": 1}
    assert all(key[2] in (unique, "other") for key in stream.rejected_by_key)  # bounded metric labels


async def test_a_venue_refusing_a_symbol_marks_it_down_and_the_others_carry_on(
    nats_url: str, nc: Client, unique: str
) -> None:
    good = unique
    refused = unique + "X"  # the fake has no snapshot for it: HTTP 400 "Invalid symbol."
    snapshot, diffs, _ = book_scenario(good, "spot", 10, seed=2, levels=10)
    statuses = await collect(nc, subjects.status(refused))
    depth = await collect(nc, subjects.depth(good))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        settings = BinanceSettings(
            symbols=f"{good},{refused}", binance_ws_url=venue.ws_url, binance_rest_url=venue.rest_url
        )
        connector = BinanceConnector(settings, QUICK)
        async with running_stream(connector, nats_url, settings.symbols, QUICK) as stream:
            stream_name = f"{good.lower()}@depth@100ms"
            refused_stream = f"{refused.lower()}@depth@100ms"
            await venue.wait_for_subscribers([stream_name, refused_stream])
            await venue.send(refused_stream, {**diffs[0], "s": refused})  # its first diff asks for a snapshot
            for diff in diffs:
                await venue.send(stream_name, diff)
            await eventually(
                lambda: any(Status.model_validate_json(m.data).state == "down" for m in statuses)
            )
            await eventually(lambda: bool(depth))
            await asyncio.sleep(0.3)  # time for retries that must not happen
            report = feed_health(stream, stream.bus, 10.0, stream.telemetry).report()

    requests = [r.symbol for r in venue.snapshot_requests]
    assert requests.count(refused) == 1  # asked once, never again
    down = Status.model_validate_json(statuses[-1].data)
    assert down.state == "down" and "Invalid symbol" in down.reason
    assert report["status"] == "degraded"
    assert any(r.startswith(f"{refused} down: venue refused") for r in report["reasons"])
    assert not any(r.startswith(f"{good} ") for r in report["reasons"])  # the good symbol is live


async def test_what_nats_will_not_take_is_counted_never_fatal(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, "test-publisher")
    stream = HFTConnectorStream(native(ScriptedConnector(), ["BTCUSDT"], QUICK), bus, 1000)
    await bus.nc.close()  # every publish now fails
    trades: list[Delivered] = [Trade("stub", "BTCUSDT", i, "1", "1", "buy", False, 1, 2) for i in range(500)]

    await stream.deliver(trades)

    assert stream.publisher.publish_errors == 500
    assert stream.published["trade"] == 0
    assert stream.dropped.by_reason == {"publish_failed": 500}
    assert sum(stream.publisher.publish_errors_by_reason.values()) == 500


def test_the_log_sampler_writes_at_most_n_lines_per_reason_per_minute_and_counts_the_rest() -> None:
    now = [0.0]
    sampler = LogSampler(per_minute=3, clock=lambda: now[0])

    first_minute = [sampler.allow("not_json") for _ in range(10)]
    other_reason = sampler.allow("bad_price")
    now[0] = 61.0
    next_minute = sampler.allow("not_json")

    assert first_minute == [0, 0, 0, None, None, None, None, None, None, None]
    assert other_reason == 0  # reasons have their own budget
    assert next_minute == 7  # the line that is written says how many were suppressed


# ---- consumers -----------------------------------------------------------------------------


def test_a_huge_but_valid_looking_trade_is_refused_before_any_state() -> None:
    tick = TradeTick(
        exchange="stub",
        symbol="BTCUSDT",
        trade_id=1,
        price=Decimal(1),
        qty=Decimal(1),
        side="buy",
        is_buyer_maker=False,
        ts_event=1,
        ts_recv=1,
    )
    raw = orjson.loads(tick.to_json())
    for price in ("1e400", "1E+5", "1e99999999", "1" * 41):
        with pytest.raises(ValueError, match="price"):
            decode_trade(orjson.dumps({**raw, "price": price}))
        with pytest.raises(ValueError, match="price"):
            TradeTick.model_validate_json(orjson.dumps({**raw, "price": price}))


def test_the_vwap_repairs_itself_when_an_invariant_breaks() -> None:
    vwap = RollingVwap(10)
    vwap.add(1, Decimal("100"), Decimal("1"))
    vwap._notional += 5  # simulate a corrupted sum (scaled integers; no public way to break it)

    vwap.add(100, Decimal("200"), Decimal("1"))  # the window empties and refills

    assert vwap.value == Decimal("200.0000000000")
    assert vwap.repairs == 1 and vwap.problem is not None


# ---- strategies ----------------------------------------------------------------------------


class Misbehaving(Strategy):
    """Misbehaves in a different way on each trade id, correctly otherwise."""

    name = "bad"

    def on_trade(self, tick: TradeMsg) -> Iterable[Signal]:
        behaviour = tick.trade_id % 8
        if behaviour == 1:
            raise RuntimeError("boom")
        if behaviour == 2:
            return None  # type: ignore[return-value]
        if behaviour == 3:
            return "not signals"  # type: ignore[return-value]
        if behaviour == 4:
            return self._exploding()
        if behaviour == 5:
            return [object()]  # type: ignore[list-item]
        if behaviour == 6:
            return [self._signal(tick, strategy="other")]
        if behaviour == 7:
            time.sleep(0.08)  # blocks the loop past STRATEGY_MAX_BLOCK_MS
        return [self._signal(tick)]

    def _exploding(self) -> Iterable[Signal]:
        yield from ()
        raise ValueError("a generator that raises")

    def _signal(self, tick: TradeMsg, strategy: str = "bad") -> Signal:
        return Signal(
            strategy=strategy,
            symbol=tick.symbol,
            side="buy",
            strength=Decimal(1),
            reason="test",
            ts_event=tick.ts_event,
            ts=tick.ts_event,
        )


async def test_a_misbehaving_strategy_is_counted_reported_by_name_and_never_fatal(
    nats_url: str, nc: Client, unique: str
) -> None:
    bus = await Bus.connect(nats_url, "test-strategies")
    signals = await collect(nc, subjects.signals("bad", unique))
    runner = StrategyRunner(Misbehaving(StrategySettings()), bus, 100, max_block_s=0.05)
    task = asyncio.create_task(runner.run())
    for trade_id in range(16):
        tick = TradeTick(
            exchange="stub",
            symbol=unique,
            trade_id=trade_id,
            price=Decimal(1),
            qty=Decimal(1),
            side="buy",
            is_buyer_maker=False,
            ts_event=1,
            ts_recv=1,
        )
        runner.offer(decode_trade(tick.to_json()))
    await eventually(lambda: runner.processed == 16 and len(signals) == 4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.drain()

    assert not task.done() or task.cancelled()  # it ran until cancelled: never ended by itself
    assert runner.failures == {
        "raised": 4,  # ids 1, 9 (raise) and 4, 12 (a generator that raises)
        "returned_none": 2,
        "wrong_type": 2,
        "invalid_signal": 4,  # a non-Signal, and a signal of another strategy, twice each
        "too_many_signals": 0,
    }
    assert runner.blocked == 2
    problems = runner.problems()
    assert any(p.startswith("strategy bad: ") for p in problems)
    assert any(p.startswith("strategy bad blocked the loop for") for p in problems)


def test_bad_otel_settings_fail_at_start_up_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "services.context"], env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "0.5",
        "50000.12000000",
        "0",
        "0.000",
        "1e5",
        "1E-8",
        "-1",
        "01",
        "1.",
        ".5",
        "1" * 40,
        "1" * 41,
        " 1",
        "",
    ],
)
def test_the_json_schema_states_the_decimal_rule_the_decoders_apply(text: str) -> None:
    schema = TradeTick.model_json_schema(mode="serialization")["properties"]["price"]

    by_schema = jsonschema.Draft202012Validator(schema).is_valid(text)
    try:
        rules.decimal_text(text, "price", positive=True)
        by_rule = True
    except rules.RuleViolation:
        by_rule = False

    assert by_schema == by_rule


async def test_a_crossed_book_makes_context_degraded_and_resyncs_it() -> None:
    asked: list[str] = []

    async def feed(subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
        asked.append(subject)
        raise TimeoutError("no feed")

    context = SymbolContext("BTCUSDT", history=10, vwap_window_s=60, request=feed)
    snapshot = DepthUpdate(
        exchange="stub",
        symbol="BTCUSDT",
        bids=[(Decimal("10"), Decimal("1"))],
        asks=[(Decimal("11"), Decimal("1"))],
        is_snapshot=True,
        last_update_id=10,
        ts_event=1,
        ts_recv=1,
        seq=1,
        feed_run="RUN",
    )
    context.on_depth(decode_depth(snapshot.to_json()))
    crossed = snapshot.model_copy(
        update={
            "is_snapshot": False,
            "first_update_id": 11,
            "last_update_id": 11,
            "seq": 2,
            "bids": [(Decimal("12"), Decimal("1"))],
        }
    )
    context.on_depth(decode_depth(crossed.to_json()))

    problems = context.problems()  # sees the crossed book: reports it, and resyncs it by request

    assert any("book crossed" in p for p in problems)
    assert not context.book_synced
    await eventually(lambda: asked == ["md.BTCUSDT.book"])
    await context.keeper.close()
