"""Check that hftbacktest's Binance futures converter reads our USD-M recordings.

Records a USD-M session from the fake Binance (tests/fake_binance.py, loopback only) through the
real connector with RECORD_DIR set, then runs ``hftbacktest.data.utils.binancefutures.convert`` on
the file with the interpreter of a separate virtualenv that has hftbacktest (never part of .[dev]):

    python3 -m venv /tmp/hbt && /tmp/hbt/bin/pip install hftbacktest
    python -m bench.hftbacktest_check --hftbacktest-python /tmp/hbt/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from pathlib import Path

from bench._harness import console
from services.common.natsserver import NatsServer
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from tests.fake_binance import FakeBinance, book_scenario
from tests.helpers import running_stream

CONVERT = """
import json, sys
from hftbacktest.data.utils import binancefutures
rows = binancefutures.convert(sys.argv[1])
print(json.dumps({"rows": int(len(rows)), "depth_rows": int((rows["ev"] & 0xFF == 1).sum())}))
"""


async def record(folder: Path, nats_url: str, diffs_n: int) -> Path:
    snapshot, diffs, _ = book_scenario("BTCUSDT", "usdm", diffs_n, seed=3, levels=200)
    async with FakeBinance("usdm") as venue:
        venue.load_snapshot(snapshot)
        settings = BinanceSettings(
            binance_market="usdm",
            symbols="BTCUSDT",
            binance_ws_url=venue.ws_url,
            binance_rest_url=venue.rest_url,
            record_dir=folder,
        )
        async with running_stream(
            BinanceConnector(settings, ReconnectPolicy()), nats_url, ["BTCUSDT"], ReconnectPolicy(), "check"
        ):
            await venue.wait_for_subscribers(["btcusdt@depth@100ms"])
            for diff in diffs:
                await venue.send("btcusdt@depth@100ms", diff)
            await asyncio.sleep(1.0)
    return next((folder / "binance_usdm").glob("BTCUSDT_*.gz"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hftbacktest-python", required=True)
    parser.add_argument("--diffs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as server:
        recording = asyncio.run(record(Path(tmp), server.url, args.diffs))
        lines = sum(1 for _ in __import__("gzip").open(recording, "rt"))
        done = subprocess.run(
            [args.hftbacktest_python, "-c", CONVERT, str(recording)],
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    console.print(
        f"recorded {lines} lines ({recording.name}); hftbacktest converted them into "
        f"{result['rows']} rows, {result['depth_rows']} of them depth events"
    )


if __name__ == "__main__":
    main()
