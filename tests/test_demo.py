"""The demo shows something: the default stub makes the default strategy signal within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas.wire import decode_trade
from services.common.bus import settled
from services.connector_feed.events import Trade
from services.connector_feed.stub import StubbedConnector, StubSettings
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.vwap import VwapDeviation
from tests.helpers import eventually

ROOT = Path(__file__).parent.parent
#: Variables that would change what the default demo does.
_NOT_DEFAULT = ("DATA_SOURCE", "CONNECTOR_", "STUB_", "VWAP_", "STRATEG", "SYMBOLS", "NATS_URL", "BINANCE_")


def _first_signal_s(seed: int) -> float | None:
    """Seconds of default stub trading (20 trades/s) until the default vwap strategy's first signal."""
    stub = StubbedConnector(StubSettings(symbols="BTCUSDT", stub_seed=seed, stub_depth_per_s=0.001))
    strategy = VwapDeviation(StrategySettings())
    for step in range(1, 201):  # 10 s in steps of 50 ms
        elapsed = step * 0.05
        for event in stub.due(elapsed, int(elapsed * 1e9)):
            if isinstance(event, Trade) and strategy.on_trade(decode_trade(event.wire())):
                return elapsed
    return None


def test_the_default_stub_makes_the_default_vwap_strategy_signal_within_seconds() -> None:
    times = [_first_signal_s(seed) for seed in range(30)]

    assert None not in times
    assert max(t for t in times if t is not None) < 5.0


async def test_hftfeed_up_with_defaults_shows_signals_within_10_s(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_DEFAULT)}
    env.update({"NATS_URL": nats_url, "SYMBOLS": unique, "PYTHONPATH": str(ROOT)})
    signals: list[Msg] = []

    async def on_signal(msg: Msg) -> None:
        signals.append(msg)

    await nc.subscribe(f"signals.*.{unique}", cb=on_signal)
    await settled(nc)
    started = time.monotonic()
    up = subprocess.Popen(  # noqa: ASYNC220  (a plain child process, observed from outside)
        [sys.executable, "-m", "services.cli", "up", "--log-dir", str(tmp_path / "logs")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: bool(signals), timeout_s=10.0, interval_s=0.05)
        first_after_s = time.monotonic() - started
    finally:
        up.send_signal(signal.SIGINT)
        await asyncio.to_thread(up.wait, 15)

    signal_ = orjson.loads(signals[0].data)
    assert signals[0].subject == f"signals.vwap.{unique}"
    assert signal_["side"] in ("buy", "sell") and signal_["symbol"] == unique
    assert first_after_s < 10.0
