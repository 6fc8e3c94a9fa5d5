"""A fast, lossless stop: connector_feed as a process, USD-M over several connections, recording.

SIGTERM or SIGINT while the venue is trading, whether or not the venue answers the websocket
close: the process exits 0 within 3 s, every trade it received (as its own recording shows) is on
NATS, and every recording is a complete gzip holding the ``@trade`` stream as well.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client

from schemas import TradeTick, subjects
from tests.fake_binance import FakeBinance
from tests.helpers import collect, eventually
from tests.live_venue import LiveVenue

ROOT = Path(__file__).parent.parent
STOP_WITHIN_S = 3.0


def recorded(folder: Path) -> dict[str, list[dict[str, object]]]:
    """Every line of every recording, read to the end (a cut gzip raises ``EOFError``), by file."""
    out: dict[str, list[dict[str, object]]] = {}
    for path in sorted(folder.glob("*.gz")):
        if shutil.which("gzip"):
            check = subprocess.run(["gzip", "-t", str(path)], capture_output=True)
            assert check.returncode == 0, (path.name, check.stderr)
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        out[path.name.split("_")[0]] = [orjson.loads(line.split(" ", 1)[1]) for line in lines]
    return out


@pytest.mark.parametrize(
    ("signum", "deaf"),
    [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigterm-venue-never-answers-close", "sigint-venue-never-answers-close", "sigterm-venue-answers"],
)
async def test_a_stop_is_fast_publishes_everything_received_and_finishes_every_recording(
    nats_url: str, nc: Client, unique: str, tmp_path: Path, signum: signal.Signals, deaf: bool
) -> None:
    symbols = [f"{unique}{c}" for c in "ABC"]
    trades = {s: await collect(nc, subjects.trades(f"{s}-PERP")) for s in symbols}
    async with FakeBinance("usdm", deaf=deaf) as venue:
        lives = [LiveVenue(venue, s, "usdm", 3000, seed=i, raw_trades=True) for i, s in enumerate(symbols)]
        env = {
            **os.environ,
            "NATS_URL": nats_url,
            "DATA_SOURCE": "binance_ws",
            "BINANCE_MARKET": "usdm",
            "SYMBOLS": ",".join(symbols),
            "BINANCE_WS_URL": venue.ws_url,
            "BINANCE_REST_URL": venue.rest_url,
            "BINANCE_MAX_STREAMS_PER_CONNECTION": "2",  # 3 /market + 2 /public connections
            "RECORD_DIR": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
        }
        feed = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.connector_feed", env=env, cwd=ROOT
        )
        players: list[asyncio.Task[None]] = []
        try:
            await venue.wait_for_subscribers([s for live in lives for s in live.streams], timeout=20)
            players = [asyncio.create_task(live.play(3000, 0.005)) for live in lives]
            await eventually(lambda: all(len(t) > 50 for t in trades.values()), 10)
            connections = len(venue.open_connections)
            signalled = time.monotonic()
            feed.send_signal(signum)  # the venue keeps trading meanwhile
            code = await asyncio.wait_for(feed.wait(), 10)
            stopped_in = time.monotonic() - signalled
        finally:
            for player in players:
                player.cancel()
            await asyncio.gather(*players, return_exceptions=True)
            if feed.returncode is None:
                feed.kill()
                await feed.wait()

    assert connections == 5
    assert code == 0 and stopped_in < STOP_WITHIN_S, (code, stopped_in)
    lines = recorded(tmp_path / "binance_usdm")
    assert sorted(lines) == symbols
    received: dict[str, list[object]] = {}
    for symbol in symbols:
        data = [line.get("data") for line in lines[symbol]]
        received[symbol] = [d["a"] for d in data if isinstance(d, dict) and d.get("e") == "aggTrade"]
        fills = [d["t"] for d in data if isinstance(d, dict) and d.get("e") == "trade"]
        assert fills and len(fills) >= len(received[symbol]) - 5  # @trade recorded beside @aggTrade
    await eventually(lambda: all(len(trades[s]) >= len(received[s]) for s in symbols))
    for symbol in symbols:
        published = [TradeTick.model_validate_json(m.data).trade_id for m in trades[symbol]]
        assert published == received[symbol], f"{symbol}: every trade received is published, once"
