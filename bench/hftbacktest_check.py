"""Check that hftbacktest's Binance futures converter reads our USD-M recordings: depth, snapshots
and trades.

Records a USD-M session from the fake Binance (tests/fake_binance.py, loopback only) through the
real connector with RECORD_DIR set - a venue that keeps trading, with ``@aggTrade`` (what the feed
publishes) and ``@trade`` (what hftbacktest reads: only ``X == MARKET`` prints are trades; a few
insurance-fund and ADL prints are mixed in) - then runs hftbacktest's own
``hftbacktest.data.utils.binancefutures.convert`` on the file with the interpreter of a separate
virtualenv that has hftbacktest 2.4.4 (never part of .[dev]; tests/conftest.py's ``hbt_python``
makes one), and counts its rows by kind:

    python3 -m venv /tmp/hbt && /tmp/hbt/bin/pip install hftbacktest==2.4.4
    python -m bench.hftbacktest_check --hftbacktest-python /tmp/hbt/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench._harness import console
from services.common.natsserver import NatsServer
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from tests.fake_binance import FakeBinance, futures_trade
from tests.helpers import eventually, running_stream
from tests.live_venue import LiveVenue

#: Events in hftbacktest's converted array by kind (``ev & 0xFF``: DEPTH 1, TRADE 2, CLEAR 3,
#: SNAPSHOT 4), each counted once: its row seen locally (LOCAL_EVENT, bit 30; the converter splits an
#: event received out of exchange order into an exchange-only and a local-only row).
CONVERT = """
import json, sys
from hftbacktest.data.utils import binancefutures
rows = binancefutures.convert(sys.argv[1], buffer_size=10_000_000)
kind, local = rows["ev"] & 0xFF, (rows["ev"] & (1 << 30)) != 0
kinds = (("depth", 1), ("trade", 2), ("clear", 3), ("snapshot", 4))
counts = {name: int(((kind == k) & local).sum()) for name, k in kinds}
print(json.dumps({"rows": int(len(rows)), **counts}))
"""
SYMBOL = "BTCUSDT"
#: Every this many steps, a print that is no trade (hftbacktest must skip it, as the feed does).
OTHER_PRINT_EVERY = 25


async def record(folder: Path, nats_url: str, steps: int) -> Path:
    """A recorded USD-M session: ``<folder>/binance_usdm/BTCUSDT_<day>.gz``."""
    async with FakeBinance("usdm") as venue:
        live = LiveVenue(venue, SYMBOL, "usdm", diffs=steps, seed=3, raw_trades=True)
        settings = BinanceSettings(
            binance_market="usdm",
            symbols=SYMBOL,
            binance_ws_url=venue.ws_url,
            binance_rest_url=venue.rest_url,
            record_dir=folder,
        )
        connector = BinanceConnector(settings, ReconnectPolicy())
        async with running_stream(connector, nats_url, [SYMBOL], ReconnectPolicy(), "check"):
            await venue.wait_for_subscribers(live.streams)
            while not live.done:
                await live.step()
                if live.sent % OTHER_PRINT_EVERY == 0:
                    kind = "INSURANCE_FUND" if live.sent % (2 * OTHER_PRINT_EVERY) else "ADL"
                    other = futures_trade(SYMBOL, 10**9 + live.sent, "1.00", "1.000", True, 1, kind)
                    await venue.send(f"{SYMBOL.lower()}@trade", other)
                await asyncio.sleep(0.002)
            await eventually(lambda: connector.health()["books"][f"{SYMBOL}-PERP"]["state"] == "synced")
    return next((folder / "binance_usdm").glob(f"{SYMBOL}_*.gz"))


def recorded_kinds(recording: Path) -> dict[str, int]:
    """What the recording holds: depth diffs, REST snapshots, aggTrades, and ``@trade`` prints by ``X``."""
    counts: dict[str, int] = {}
    with gzip.open(recording, "rb") as lines:
        for line in lines:
            message: dict[str, Any] = orjson.loads(line.split(b" ", 1)[1])
            data = message.get("data", message)
            kind = data.get("e") or ("snapshot" if "lastUpdateId" in data else "other")
            if kind == "trade":
                kind = f"trade_{data.get('X')}"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def convert(hftbacktest_python: str, recording: Path) -> dict[str, int]:
    """hftbacktest's own converter on the recording: its rows by kind."""
    done = subprocess.run(
        [hftbacktest_python, "-c", CONVERT, str(recording)], capture_output=True, text=True, check=True
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hftbacktest-python", required=True)
    parser.add_argument("--steps", type=int, default=300, help="depth diffs (each with one trade)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as server:
        recording = asyncio.run(record(Path(tmp), server.url, args.steps))
        kinds = recorded_kinds(recording)
        rows = convert(args.hftbacktest_python, recording)
    console.print(f"recorded {sum(kinds.values())} lines ({recording.name}): {kinds}")
    console.print(
        f"hftbacktest converted them into {rows['rows']} rows: {rows['depth']} depth, {rows['trade']} trade "
        f"(one per MARKET print), {rows['clear']} clear and {rows['snapshot']} snapshot"
    )


if __name__ == "__main__":
    main()
