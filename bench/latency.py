"""Publish -> subscriber latency at a paced 10k events/s, publisher and subscriber in separate processes.

Two scenarios, same run, same nats-server:
  feed: the real connector_feed process (stub connector at STUB_TRADES_PER_S) publishing
        md.<SYMBOL>.trades; latency = subscriber receipt - the feed's ts_recv (the moment the
        feed took the event from the connector: normalise + queue + encode + NATS + delivery);
  raw:  a plain nats-py publisher paced the same way, with its send time in the payload (the floor).
Timestamps are wall-clock nanoseconds on one host. The first second is dropped as warm-up.

    python -m bench.latency --rate 10000 --seconds 10 --runs 3 --json bench/results/latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import orjson
import uvloop
from nats.aio.msg import Msg

from bench._harness import console, machine, median, percentile, save, show
from services.common.natsserver import NatsServer

ROOT = Path(__file__).parent.parent


async def subscribe(url: str, subject: str, seconds: float, warmup_s: float, out: Path) -> None:
    """Subscriber process: record latency (ns) of every message after the warm-up."""
    nc = await nats.connect(url)
    latencies: list[int] = []
    ids: list[int] = []
    first: list[int] = []

    async def on_msg(msg: Msg) -> None:
        now = time.time_ns()
        body = orjson.loads(msg.data)
        if not first:
            first.append(now)
        if now - first[0] >= warmup_s * 1e9:
            latencies.append(now - body["ts_recv"])
            ids.append(body["trade_id"])

    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    out.with_suffix(".ready").write_text("1")
    deadline = time.monotonic() + seconds + 30
    while (
        not first or time.time_ns() - first[0] < (seconds + warmup_s) * 1e9
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await nc.drain()
    lost = (ids[-1] - ids[0] + 1 - len(ids)) if ids else 0
    out.write_bytes(orjson.dumps({"latencies_ns": latencies, "lost": lost}))


async def raw_publisher(url: str, subject: str, rate: int, seconds: float) -> None:
    """Paced plain publisher: ``rate`` msgs/s in 1 ms ticks, send time in ``ts_recv``."""
    nc = await nats.connect(url)
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            sent += 1
            await nc.publish(
                subject, orjson.dumps({"trade_id": sent, "ts_recv": time.time_ns(), "pad": "x" * 150})
            )
        await asyncio.sleep(0.001 if sent >= due else 0)
    await nc.drain()


def run_subscriber(url: str, subject: str, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "--role",
            "sub",
            "--url",
            url,
            "--subject",
            subject,
            "--seconds",
            str(seconds),
            "--out",
            str(out),
        ],
        cwd=ROOT,
    )
    ready = out.with_suffix(".ready")
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError("subscriber died")
        time.sleep(0.05)
    return process


def summarise(out: Path) -> dict[str, Any]:
    data = orjson.loads(out.read_bytes())
    values = sorted(v / 1000 for v in data["latencies_ns"])
    return {
        "n": len(values),
        "lost": data["lost"],
        "p50_us": percentile(values, 0.5),
        "p99_us": percentile(values, 0.99),
        "p999_us": percentile(values, 0.999),
        "max_us": values[-1] if values else None,
    }


def scenario(kind: str, url: str, args: argparse.Namespace, tmp: Path, run: int) -> dict[str, Any]:
    symbol = f"LAT{kind.upper()}{run}"
    out = tmp / f"{kind}-{run}.json"
    subscriber = run_subscriber(url, f"md.{symbol}.trades", args.seconds, out)
    if kind == "feed":
        env = dict(
            os.environ,
            NATS_URL=url,
            DATA_SOURCE="hft_connector",
            CONNECTOR_NAME="stub",
            SYMBOLS=symbol,
            STUB_TRADES_PER_S=str(args.rate),
            STUB_DEPTH_PER_S="10",
            CONNECTOR_POLL_INTERVAL_MS="1",
            LOG_LEVEL="WARNING",
        )
        publisher = subprocess.Popen(
            [sys.executable, "-m", "services.connector_feed"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
        )
    else:
        publisher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.latency",
                "--role",
                "pub",
                "--url",
                url,
                "--subject",
                f"md.{symbol}.trades",
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds + 3),
            ],
            cwd=ROOT,
        )
    subscriber.wait(timeout=args.seconds + 60)
    publisher.terminate()
    publisher.wait(timeout=15)
    return summarise(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "sub", "pub"], default="bench")
    parser.add_argument("--url")
    parser.add_argument("--subject")
    parser.add_argument("--out")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    if args.role == "sub":
        asyncio.run(subscribe(args.url, args.subject, args.seconds, 1.0, Path(args.out)))
        return
    if args.role == "pub":
        # On uvloop like the feed: the pacing (1 ms ticks) then batches alike. uvloop's timers have
        # 1 ms resolution (a 1 ms sleep lasts 1-2 ms), asyncio's do not: on asyncio the raw
        # publisher sent batches a third smaller and its p50 was ~80 us lower for that alone.
        uvloop.run(raw_publisher(args.url, args.subject, args.rate, args.seconds))
        return
    info = machine()
    tmp = ROOT / "bench" / "results" / "tmp-latency"
    tmp.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {"feed": [], "raw": []}
    with NatsServer() as server:
        for run in range(args.runs):
            for kind in ("feed", "raw"):
                results[kind].append(scenario(kind, server.url, args, tmp, run))
                r = results[kind][-1]
                console.print(
                    f"run {run + 1}/{args.runs} {kind}: p50 {r['p50_us']:.0f} µs p99 {r['p99_us']:.0f} µs "
                    f"p99.9 {r['p999_us']:.0f} µs lost {r['lost']} (n={r['n']})"
                )
    medians = {
        kind: {k: median([r[k] for r in runs]) for k in ("p50_us", "p99_us", "p999_us", "max_us", "lost")}
        for kind, runs in results.items()
    }
    show(
        f"publish -> subscriber latency at {args.rate:,}/s (medians of {args.runs} runs, µs)",
        ["scenario", "p50", "p99", "p99.9", "max", "lost"],
        [
            [
                k,
                f"{m['p50_us']:.0f}",
                f"{m['p99_us']:.0f}",
                f"{m['p999_us']:.0f}",
                f"{m['max_us']:.0f}",
                m["lost"],
            ]
            for k, m in medians.items()
        ],
    )
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    save(args.json, {"machine": info, "args": vars(args), "runs": results, "medians": medians})


if __name__ == "__main__":
    main()
