"""Replay speed: a large synthetic recording through ReplayConnector at REPLAY_SPEED=0, beside
the live parse path (BinanceParser + LocalBook on the same frames) measured in the same run.

    python -m bench.replay --n 200000 --runs 3 --json bench/results/replay.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from bench._harness import console, machine, save, show
from bench.binance_parse import agg_trade_frames, depth_frames
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.parse import BinanceParser, DepthDiff, Snapshot
from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.connector import Delivered

T0_NS = 1_767_225_600_000_000_000


def write_recording(folder: Path, n: int, seed: int) -> tuple[list[bytes], Snapshot]:
    """A day file of BTCUSDT: a REST snapshot line, then trades and depth diffs interleaved."""
    rng = random.Random(seed)
    trades = agg_trade_frames(n // 2, rng)
    snapshot, diffs, _ = depth_frames(n // 2, rng)
    first = json.loads(diffs[0])["data"]
    snapshot = Snapshot(first["U"] - 1, snapshot.bids, snapshot.asks)
    body = json.dumps(
        {"lastUpdateId": snapshot.last_update_id, "bids": snapshot.bids, "asks": snapshot.asks},
        separators=(",", ":"),
    )
    frames = [f for pair in zip(diffs, trades, strict=True) for f in pair]
    lines = [f"{T0_NS} {body}"] + [f"{T0_NS + i + 1} {frame.decode()}" for i, frame in enumerate(frames)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BTCUSDT_20260101.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), 6))
    return frames, snapshot


class CountingSink:
    """The feed's side of the seam, counting what is delivered (no NATS: the decode paths alone)."""

    def __init__(self) -> None:
        self.events = 0

    async def deliver(self, batch: Sequence[Delivered]) -> None:
        self.events += len(batch)

    def put(self, batch: Sequence[Delivered]) -> bool:
        self.events += len(batch)
        return True

    async def room(self) -> None:
        return None


async def replay_once(folder: Path) -> tuple[float, int]:
    """The replay: gzip -> lines -> the live decoder -> batches delivered."""
    connector = ReplayConnector(ReplaySettings(replay_path=folder, replay_speed=0))
    sink = CountingSink()
    start = time.perf_counter()
    task = asyncio.create_task(connector.run(sink))
    while not connector.finished:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed, sink.events


def live_once(frames: list[bytes], snapshot: Snapshot) -> tuple[float, int]:
    parser = BinanceParser("spot", "aggTrade")
    book = LocalBook("binance", "BTCUSDT", futures=False)
    events = len(book.on_snapshot(snapshot))  # first, as in the recording (see connector_once)
    start = time.perf_counter()
    for frame in frames:
        item = parser.parse(frame, 1)
        if type(item) is DepthDiff:
            events += len(book.on_diff(item))
        else:
            events += 1
    assert book.synced, "the benchmark must measure a synced book"
    return time.perf_counter() - start, events


def connector_once(frames: list[bytes], snapshot: Snapshot) -> tuple[float, int]:
    """The live connector's own per-frame path (the decoder: parse, books, statuses, dedupe), on the
    ``str`` frames the websocket hands it."""
    states = SymbolStates("binance", ["BTCUSDT"], ["trades", "depth"], {"trades": 1e9, "depth": 1e9})
    decoder = BinanceDecoder("spot", ["BTCUSDT"], "aggTrade", "diff", states)
    texts = [frame.decode() for frame in frames]
    # The snapshot first, as in the recording: it continues into the first diff. (After that diff,
    # Binance's spot step 4 refuses it - lastUpdateId < U - and the book would never sync.)
    events = len(decoder.on_snapshot("BTCUSDT", snapshot))
    start = time.perf_counter()
    for i, text in enumerate(texts):
        events += len(decoder.on_frame(text, T0_NS + i).events)
    assert decoder.books["BTCUSDT"].synced, "the benchmark must measure a synced book"
    return time.perf_counter() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=200_000, help="frames in the recording (half trades, half depth)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    info = machine()
    rates: dict[str, list[float]] = {"replay": [], "parse": [], "connector": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "binance"
        frames, snapshot = write_recording(folder, args.n, seed=5)
        size = (folder / "BTCUSDT_20260101.gz").stat().st_size
        # As the services do at start (services/common/lifecycle.py): what exists now - here the
        # recording's frames in memory - is never scanned again by the collector, for every path.
        gc.freeze()
        for run in range(args.runs):
            rates["replay"].append(len(frames) / uvloop.run(replay_once(folder))[0])
            rates["parse"].append(len(frames) / live_once(frames, snapshot)[0])
            rates["connector"].append(len(frames) / connector_once(frames, snapshot)[0])
            console.print(
                f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} frames/s" for k, v in rates.items())
            )
    medians = {k: statistics.median(v) for k, v in rates.items()}
    result: dict[str, Any] = {
        "frames": len(frames),
        "gzip_bytes": size,
        "frames_per_s": rates,
        "medians": medians,
        "replay_over_parse": medians["replay"] / medians["parse"],
        "replay_over_connector": medians["replay"] / medians["connector"],
    }
    show(
        "replay at REPLAY_SPEED=0 vs the live paths (frames/s, medians)",
        [
            "frames",
            "replay (gzip -> events)",
            "live: parser + book",
            "live: connector on_frame",
            "replay / parser",
            "replay / connector",
        ],
        [
            [
                len(frames),
                medians["replay"],
                medians["parse"],
                medians["connector"],
                f"{result['replay_over_parse']:.2f}",
                f"{result['replay_over_connector']:.2f}",
            ]
        ],
    )
    save(args.json, {"machine": info, "args": vars(args), "results": result})


if __name__ == "__main__":
    main()
