"""Events/s a strategy_engine and a context process each absorb without loss.

A publisher (this process) sends N valid TradeTick messages to md.<SYMBOL>.trades as fast as
nats-py can; the service runs as its own process (as in production). Absorbed rate = N / (first
publish -> the service's health reports all N consumed); lost = N - consumed, plus the service's
own drop counters (NATS slow-consumer drops, strategy queue drops).

    python -m bench.consumers --events 300000 --runs 3 --json bench/results/consumers.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.client import Client

from bench._harness import console, machine, median, save, show
from schemas import TradeTick, subjects
from services.common.natsserver import NatsServer

ROOT = Path(__file__).parent.parent
MODULES = {"strategy_engine": "services.strategy_engine", "context": "services.context"}


def trades(symbol: str, n: int) -> list[bytes]:
    out = []
    cents = 5_000_000
    for i in range(1, n + 1):
        cents += (-1, 0, 1, 0)[i % 4] * (i % 7)
        tick = TradeTick(
            exchange="stub",
            symbol=symbol,
            trade_id=i,
            price=Decimal(cents) / 100,
            qty=Decimal("0.01"),
            side="buy" if i % 3 else "sell",
            is_buyer_maker=not i % 3,
            ts_event=time.time_ns(),
            ts_recv=time.time_ns(),
        )
        out.append(tick.to_json())
    return out


async def health(nc: Client, service: str) -> dict[str, Any]:
    reply = await nc.request(subjects.health(service), b"", timeout=2)
    body: dict[str, Any] = orjson.loads(reply.data)
    return body


async def one_run(url: str, service: str, payloads: list[bytes], symbol: str) -> dict[str, Any]:
    env = dict(os.environ, NATS_URL=url, SYMBOLS=symbol, LOG_LEVEL="WARNING", STRATEGY_QUEUE_SIZE="10000")
    process = subprocess.Popen(
        [sys.executable, "-m", MODULES[service]], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    nc = await nats.connect(url)
    try:
        for _ in range(200):
            try:
                await health(nc, service)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.05)
        subject = subjects.trades(symbol)
        n = len(payloads)
        start = time.perf_counter()
        for i, payload in enumerate(payloads):
            await nc.publish(subject, payload)
            if i % 256 == 0:
                await asyncio.sleep(0)
        await nc.flush()
        published_s = time.perf_counter() - start
        consumed, last_change, report = 0, time.perf_counter(), {}
        while consumed < n and time.perf_counter() - last_change < 5:
            report = await health(nc, service)
            if report["consumed"]["trade"] != consumed:
                consumed, last_change = report["consumed"]["trade"], time.perf_counter()
            await asyncio.sleep(0.01)
        elapsed = last_change - start
        if service == "strategy_engine":  # the strategy must also have processed everything
            while (
                time.perf_counter() - last_change < 5
                and report["strategies"]["vwap"]["processed"] + report["strategies"]["vwap"]["dropped"]
                < consumed
            ):
                report = await health(nc, service)
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - start
        strategy_drops = report["strategies"]["vwap"]["dropped"] if service == "strategy_engine" else 0
        return {
            "events": n,
            "consumed": consumed,
            "lost": n - consumed,
            "strategy_dropped": strategy_drops,
            "slow_consumer_drops": report.get("slow_consumer_drops", 0),
            "publish_rate": n / published_s,
            "absorbed_per_s": consumed / elapsed,
        }
    finally:
        await nc.drain()
        process.terminate()
        process.wait(timeout=10)


async def main_async(args: argparse.Namespace, url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for service in args.services:
        runs = []
        for run in range(args.runs):
            symbol = f"CB{service[:3].upper()}{run}"
            payloads = trades(symbol, args.events)
            runs.append(await one_run(url, service, payloads, symbol))
            r = runs[-1]
            console.print(
                f"{service} run {run + 1}/{args.runs}: {r['absorbed_per_s']:,.0f}/s, lost {r['lost']}, "
                f"strategy dropped {r['strategy_dropped']}, publisher {r['publish_rate']:,.0f}/s"
            )
        results[service] = {
            "runs": runs,
            "median_absorbed_per_s": median([r["absorbed_per_s"] for r in runs]),
            "total_lost": sum(r["lost"] + r["strategy_dropped"] for r in runs),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--services", nargs="+", default=list(MODULES), choices=list(MODULES))
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    info = machine()
    with NatsServer() as server:
        results = asyncio.run(main_async(args, server.url))
    show(
        "events/s absorbed per consumer process (medians)",
        ["service", "events/s", "lost (all runs)"],
        [[s, r["median_absorbed_per_s"], r["total_lost"]] for s, r in results.items()],
    )
    save(args.json, {"machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
