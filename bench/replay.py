"""Replay speed: a large recording through ReplayConnector at REPLAY_SPEED=0, beside the live
connector on the same kind of frames, all in one run.

    python -m bench.replay --n 200000 --runs 3 --json bench/results/replay.json

The frames are the end-to-end bench's (``bench/e2e_frames.py``: BTCUSDT ``@trade`` frames and
``@depth@100ms`` diffs of 10-20 levels over a 1000-level book, one diff per trade). Contenders:

- ``replay``: a day file of them (gzip, ``<recv_ns> <text>`` lines, the REST snapshot first) through
  ``ReplayConnector.run`` into a counting sink;
- ``socket``: the live ``BinanceConnector`` in this process, reading the same frames from the fake
  venue (``bench/e2e_fake.py``, its own process) over a loopback WebSocket - picows, the links, the
  decoder - into the same counting sink: what receiving the stream live costs;
- ``decoder``: the live connector's per-frame path alone (``BinanceDecoder.on_frame`` on the frames'
  bytes, as the socket hands them over), no socket: the floor that neither can go below;
- ``parse``: ``BinanceParser`` + ``LocalBook`` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from bench._harness import console, machine, save, show
from bench.e2e_frames import SYMBOL, depth_pool, trade_pool, ws_payload
from bench.e2e_procs import Child
from bench.ws_clients import start_fake
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.parse import BinanceParser, DepthDiff, Snapshot, parse_rest_snapshot
from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.connector import Delivered

T0_NS = 1_767_225_600_000_000_000
SEED = 7  # the fake venue's default: its pools are these frames
#: Frames the fake sends before the burst (warm-up, one trade and one diff per 100 ms): its pools
#: hold this many more than the burst needs.
WARM_MARGIN = 3000


def recording_frames(n: int) -> tuple[list[bytes], Snapshot]:
    """``n`` frames as the fake venue builds them (half trades, half diffs, a diff before each
    trade) and the REST snapshot the first diff continues."""
    t0_ms = T0_NS // 1_000_000
    trades = trade_pool(n // 2, SEED, t0_ms)
    depth = depth_pool(n // 2, SEED + 1, t0_ms)
    snapshot = parse_rest_snapshot(depth.snapshot(0, 1000))
    pairs = zip(depth.frames, trades.trade, strict=True)
    return [ws_payload(frame) for pair in pairs for frame in pair], snapshot


def write_recording(folder: Path, frames: list[bytes], snapshot: Snapshot) -> None:
    """A day file of BTCUSDT: the REST snapshot line, then the frames, as the recorder writes them."""
    lines = [f"{T0_NS} {snapshot.raw}".encode()]
    lines += [b"%d %s" % (T0_NS + i + 1, frame) for i, frame in enumerate(frames)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SYMBOL}_20260101.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n", 6))


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


async def socket_once(fake: Child, port: int, frames: int) -> tuple[float, int]:
    """The live connector reading ``frames`` frames (half trades, half diffs) from the fake venue."""
    await asyncio.to_thread(fake.call, "arm", warm=True)
    url = f"127.0.0.1:{port}"
    settings = BinanceSettings(
        symbols=[SYMBOL],
        binance_market="spot",
        binance_ws_url=f"ws://{url}",
        binance_rest_url=f"http://{url}",
    )
    connector = BinanceConnector(settings)
    sink = CountingSink()
    task = asyncio.create_task(connector.run(sink))
    try:
        deadline = time.monotonic() + 30
        while (book := connector.book(SYMBOL)) is None or not book.synced:
            if time.monotonic() > deadline:
                raise RuntimeError("the live connector's book never synced on the fake venue")
            await asyncio.sleep(0.01)
        before, events_before = connector.decoder.frames, sink.events
        start = time.perf_counter()
        plan = {"kind": "burst", "trades": frames // 2, "depth_every": 1}
        await asyncio.to_thread(fake.call, "go", plan=plan)
        while connector.decoder.frames < before + frames:
            if time.perf_counter() - start > 120:
                raise RuntimeError(f"{connector.decoder.frames - before} of {frames} frames in 120 s")
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
        assert connector.decoder.malformed == {}, connector.decoder.malformed
        assert connector.book(SYMBOL) is book and book.synced and book.stats.gaps == 0
        return elapsed, sink.events - events_before
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connector.close()


def parse_once(frames: list[bytes], snapshot: Snapshot) -> tuple[float, int]:
    parser = BinanceParser("spot", "trade")
    book = LocalBook("binance", SYMBOL, futures=False)
    book.on_snapshot(snapshot)
    events = 0
    start = time.perf_counter()
    for frame in frames:
        item = parser.parse(frame, 1)
        if type(item) is DepthDiff:
            events += len(book.on_diff(item))
        else:
            events += 1
    assert book.synced, "the benchmark must measure a synced book"
    return time.perf_counter() - start, events


def decoder_once(frames: list[bytes], snapshot: Snapshot) -> tuple[float, int]:
    """The live connector's own per-frame path (the decoder: parse, books, statuses, dedupe), on the
    frames' bytes as the WebSocket hands them over (a memoryview of the payload)."""
    states = SymbolStates("binance", [SYMBOL], ["trades", "depth"], {"trades": 1e9, "depth": 1e9})
    decoder = BinanceDecoder("spot", [SYMBOL], "trade", "diff", states)
    views = [memoryview(frame) for frame in frames]
    events = len(decoder.on_snapshot(SYMBOL, snapshot))  # first, as in the recording
    start = time.perf_counter()
    for i, view in enumerate(views):
        events += len(decoder.on_frame(view, T0_NS + i).events)
    assert decoder.books[SYMBOL].synced, "the benchmark must measure a synced book"
    assert decoder.malformed == {}, decoder.malformed
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
    rates: dict[str, list[float]] = {"replay": [], "socket": [], "decoder": [], "parse": []}
    events: dict[str, list[int]] = {k: [] for k in rates}
    frames, snapshot = recording_frames(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "binance"
        write_recording(folder, frames, snapshot)
        size = (folder / f"{SYMBOL}_20260101.gz").stat().st_size
        fake, port = start_fake(args.n // 2 + WARM_MARGIN, args.n // 2 + WARM_MARGIN, Path(tmp) / "fake.log")
        try:
            # As the services do at start (services/common/lifecycle.py): what exists now - here the
            # frames in memory - is never scanned again by the collector, for every path.
            gc.freeze()
            for run in range(args.runs):
                for name in rates:
                    if name == "replay":
                        elapsed, count = uvloop.run(replay_once(folder))
                    elif name == "socket":
                        elapsed, count = uvloop.run(socket_once(fake, port, len(frames)))
                    elif name == "decoder":
                        elapsed, count = decoder_once(frames, snapshot)
                    else:
                        elapsed, count = parse_once(frames, snapshot)
                    rates[name].append(len(frames) / elapsed)
                    events[name].append(count)
                console.print(
                    f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} frames/s" for k, v in rates.items())
                )
        finally:
            fake.close()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    result: dict[str, Any] = {
        "frames": len(frames),
        "gzip_bytes": size,
        "frames_per_s": rates,
        "events": events,
        "medians": medians,
        "replay_over_socket": medians["replay"] / medians["socket"],
        "replay_over_decoder": medians["replay"] / medians["decoder"],
        "replay_over_parse": medians["replay"] / medians["parse"],
    }
    show(
        "replay at REPLAY_SPEED=0 vs the live connector (frames/s, medians)",
        [
            "frames",
            "replay",
            "live: socket",
            "live: decoder alone",
            "parser + book",
            "replay / socket",
            "replay / decoder",
        ],
        [
            [
                len(frames),
                round(medians["replay"]),
                round(medians["socket"]),
                round(medians["decoder"]),
                round(medians["parse"]),
                f"{result['replay_over_socket']:.2f}",
                f"{result['replay_over_decoder']:.2f}",
            ]
        ],
    )
    save(args.json, {"machine": info, "args": vars(args), "results": result})


if __name__ == "__main__":
    main()
