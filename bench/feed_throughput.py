"""Events/s through connector_feed in one process, beside the raw nats-py ceiling.

Feed: the native stub connector at full speed (batches of 64) -> the feed's pipeline (accept,
count, queue) -> encode -> NATS publish inline,
timed until every event is published and flushed to a real nats-server. Ceiling: raw nats-py
publishing of exactly the same bytes (pre-serialised, same subjects). Runs alternate, medians.

    python -m bench.feed_throughput --events 200000 --runs 5 --json bench/results/feed_throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench._harness import console, machine, median, save, show
from services.common.bus import Bus
from services.common.natsserver import NatsServer
from services.common.telemetry import TelemetrySettings, setup_telemetry
from services.connector_feed.connector import Delivered
from services.connector_feed.events import Depth, Trade
from services.connector_feed.metrics import register_feed_metrics
from services.connector_feed.stream import HFTConnectorStream
from services.connector_feed.stub import StubbedConnector, StubSettings

SYMBOL = "BENCH"


class CountedStub(StubbedConnector):
    """The stub, unthrottled, stopping after ``limit`` events."""

    def __init__(self, settings: StubSettings, limit: int) -> None:
        super().__init__(settings)
        self.left = limit

    def due(self, elapsed: float, now_ns: int) -> list[Delivered]:
        if self.left <= 0:
            return []
        batch = super().due(elapsed, now_ns)[: self.left]
        self.left -= len(batch)
        return batch


def _settings(depth: bool) -> StubSettings:
    # Trades only: depth at one message a day (never, in a run); else both unthrottled, 1:1.
    depth_rate = 0 if depth else 1e-5
    return StubSettings(symbols=SYMBOL, stub_trades_per_s=0, stub_depth_per_s=depth_rate, stub_seed=42)


async def feed_run(url: str, n: int, depth: bool, otlp_endpoint: str | None = None) -> float:
    """The feed; with ``otlp_endpoint``, tracing and metrics on (default md sampling ratio, 0.01)."""
    bus = await Bus.connect(url, "bench-feed")
    telemetry = None
    if otlp_endpoint is not None:
        telemetry = setup_telemetry(
            "connector_feed",
            TelemetrySettings(
                otel_exporter_otlp_endpoint=otlp_endpoint, otel_exporter_otlp_protocol="http/protobuf"
            ),
        )
    stream = HFTConnectorStream(CountedStub(_settings(depth), n), bus, 10_000, telemetry=telemetry)
    if telemetry is not None:
        register_feed_metrics(telemetry.meter(), stream)
    start = time.perf_counter()
    task = asyncio.create_task(stream.run())
    while sum(stream.published.values()) + stream.dropped.trades + stream.dropped.depth < n:
        await asyncio.sleep(0.0005)
    await bus.nc.flush()
    elapsed = time.perf_counter() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bus.drain()
    assert stream.dropped.trades == stream.dropped.depth == 0, "the feed dropped events"
    if telemetry is not None:
        telemetry.shutdown()
    return n / elapsed


async def same_bytes(n: int, depth: bool) -> list[tuple[str, bytes]]:
    """The exact messages the feed publishes for this stub stream."""
    stub = CountedStub(_settings(depth), n)
    out = []
    while batch := stub.due(1e9, time.time_ns()):
        for event in batch:
            assert isinstance(event, Trade | Depth)
            kind = "trades" if isinstance(event, Trade) else "depth"
            out.append((f"md.{SYMBOL}.{kind}", event.wire()))
    return out


async def raw_run(url: str, messages: list[tuple[str, bytes]]) -> float:
    bus = await Bus.connect(url, "bench-raw")
    publish = bus.nc.publish
    start = time.perf_counter()
    for i, (subject, payload) in enumerate(messages):
        await publish(subject, payload)
        if i % 64 == 0:
            await asyncio.sleep(0)  # as fair to the loop as the feed's reader
    await bus.nc.flush()
    elapsed = time.perf_counter() - start
    await bus.drain()
    return len(messages) / elapsed


async def main_async(args: argparse.Namespace, url: str, otlp_endpoint: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mix in args.mix:
        depth = mix == "mixed"
        messages = await same_bytes(args.events, depth)
        mean_size = sum(len(p) for _, p in messages) / len(messages)
        feed, traced, raw = [], [], []
        for run in range(args.runs):
            feed.append(await feed_run(url, args.events, depth))
            traced.append(await feed_run(url, args.events, depth, otlp_endpoint))
            raw.append(await raw_run(url, messages))
            console.print(
                f"{mix} run {run + 1}/{args.runs}: feed {feed[-1]:,.0f}/s, with tracing {traced[-1]:,.0f}/s, "
                f"raw {raw[-1]:,.0f}/s"
            )
        ratios = [f / r for f, r in zip(feed, raw, strict=True)]
        tracing_ratios = [t / f for t, f in zip(traced, feed, strict=True)]
        results[mix] = {
            "events": args.events,
            "mean_payload_bytes": round(mean_size, 1),
            "feed_events_per_s": feed,
            "raw_msgs_per_s": raw,
            "ratio": ratios,
            "median_feed": median(feed),
            "median_raw": median(raw),
            "median_ratio": median(ratios),
            "feed_tracing_events_per_s": traced,
            "tracing_ratio": tracing_ratios,
            "median_feed_tracing": median(traced),
            "median_tracing_ratio": median(tracing_ratios),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--mix",
        nargs="+",
        default=["trades", "mixed"],
        choices=["trades", "mixed"],
        help="trades only, or trades + top-10 depth snapshots 1:1",
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="as EVENT_LOOP")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    info = machine()
    # The OTLP receiver runs in a process of its own, as a collector would: in this process its
    # protobuf decoding would compete with the feed for the GIL.
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp_receiver"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert receiver.stdout is not None
        endpoint = receiver.stdout.readline().strip()
        with NatsServer() as server:
            runner = uvloop.run if args.loop == "uvloop" else asyncio.run
            results = runner(main_async(args, server.url, endpoint))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    show(
        f"connector_feed throughput (one process, {args.loop}, medians)",
        [
            "mix",
            "payload B",
            "feed events/s",
            "with tracing (0.01)",
            "tracing / off",
            "raw nats-py",
            "feed / raw",
        ],
        [
            [
                mix,
                r["mean_payload_bytes"],
                r["median_feed"],
                r["median_feed_tracing"],
                f"{r['median_tracing_ratio']:.2f}",
                r["median_raw"],
                f"{r['median_ratio']:.2f}",
            ]
            for mix, r in results.items()
        ],
    )
    save(args.json, {"machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
