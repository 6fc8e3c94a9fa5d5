"""Events/s a strategy_engine and a context process each absorb without loss, beside a floor.

A publisher (this process) sends N valid ``TradeTick`` messages to ``md.<SYMBOL>.trades`` as fast
as nats-py can, with the feed's own sampled headers (``bench.consumer_load``: a lag sample per
10 ms, a trace on 1 % of messages up to 100/s). Each contender runs as its own process, started
afresh for every run:

- ``strategy_engine`` and ``context``: the real services (uvloop, as in production), telemetry on:
  traces and metrics exported over OTLP/HTTP to a sink in a process of its own (as
  ``bench.e2e_binance`` and ``bench.feed_throughput`` do), metrics exported every second
  (``OTEL_METRIC_EXPORT_INTERVAL=1000``, so exports happen during the run), every hardening rule on;
- ``floor``: a bare nats-py subscriber that only decodes and counts (``bench.consumer_floor``).

Absorbed rate = consumed / (first publish -> the contender reports all consumed; for the strategy
engine, also processed by the ``vwap`` strategy), polled every 50 ms, then every 2 ms from 90 %.
CPU µs/event = the contender's CPU time over that interval / events: steadier than the rate on a
shared host. Lost = N - consumed, plus strategy-queue drops.
Contenders alternate within each run; medians over runs.

    python -m bench.consumers --events 300000 --runs 3 --json bench/results/consumers.json
    python -m bench.consumers --runs 1 --services strategy_engine --profile /tmp/prof  # py-spy
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
from nats.aio.client import Client

from bench._harness import console, machine, median, save, show
from bench.consumer_floor import COUNT_SUBJECT
from bench.consumer_load import publish_raw, trades
from bench.e2e_procs import cpu_seconds, stop
from bench.pyspy_summary import py_spy, summarise, top
from schemas import subjects
from services.common.natsserver import NatsServer

ROOT = Path(__file__).parent.parent
CONTENDERS = ("strategy_engine", "context", "floor")
QUIET_S = 5.0  # no progress for this long (health answering meanwhile): the run is over


def command(contender: str, url: str) -> list[str]:
    if contender == "floor":
        return [sys.executable, "-m", "bench.consumer_floor", url]
    return [sys.executable, "-m", f"services.{contender}"]


async def progress(nc: Client, contender: str) -> tuple[int, int, dict[str, Any]]:
    """(consumed, done, health): done = processed by every stage (the strategy too)."""
    if contender == "floor":
        reply = await nc.request(COUNT_SUBJECT, b"", timeout=2)
        consumed = int(reply.data)
        return consumed, consumed, {}
    reply = await nc.request(subjects.health(contender), b"", timeout=2)
    report: dict[str, Any] = orjson.loads(reply.data)
    consumed = report["consumed"]["trade"]
    if contender == "strategy_engine":
        vwap = report["strategies"]["vwap"]
        return consumed, vwap["processed"] + vwap["dropped"], report
    return consumed, consumed, report


async def until_ready(nc: Client, contender: str) -> None:
    for _ in range(400):
        try:
            await progress(nc, contender)
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{contender} did not answer in 20 s")


async def one_run(
    url: str,
    contender: str,
    payloads: list[bytes],
    symbol: str,
    env: dict[str, str],
    profile: Path | None,
    rate: float,
) -> dict[str, Any]:
    process = subprocess.Popen(command(contender, url), env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    spy: subprocess.Popen[bytes] | None = None
    nc = await nats.connect(url)
    try:
        await until_ready(nc, contender)
        if profile is not None:
            spy = py_spy(process.pid, profile)
        n = len(payloads)
        cpu_before = cpu_seconds(process.pid)
        start = time.perf_counter()
        sampled = await publish_raw(url, subjects.trades(symbol), payloads, rate)
        published_s = time.perf_counter() - start
        done, last_change, consumed = 0, time.perf_counter(), 0
        report: dict[str, Any] = {}
        unanswered = 0
        while done < n and time.perf_counter() - last_change < QUIET_S + unanswered * 2:
            try:
                consumed_now, done_now, report = await progress(nc, contender)
            except nats.errors.TimeoutError:  # busy: health waits for the loop like everything else
                unanswered += 1  # (a request that timed out does not count as a quiet 2 s)
                continue
            if done_now != done:
                done, last_change = done_now, time.perf_counter()
            consumed = consumed_now
            # Each health request costs the service ~0.1-0.3 ms: ask rarely until the end is near.
            await asyncio.sleep(0.002 if done > 0.9 * n else 0.05)
        cpu_used = cpu_seconds(process.pid) - cpu_before  # (a few health replies included)
        vwap = report.get("strategies", {}).get("vwap", {})
        return {
            "events": n,
            "consumed": consumed,
            "lost": n - consumed,
            "strategy_dropped": vwap.get("dropped", 0),
            "rejected": report.get("rejected", {}),
            "slow_consumer_drops": report.get("slow_consumer_drops", 0),
            "publish_rate": n / published_s,
            "absorbed_per_s": done / (last_change - start),
            "cpu_us_per_event": 1e6 * cpu_used / max(done, 1),
            "signals": vwap.get("signals", 0),
            **sampled,
        }
    finally:
        await nc.drain()
        stop(process)  # SIGTERM, then SIGKILL after 10 s
        if spy is not None:
            spy.wait(timeout=60)


def service_env(url: str, symbol: str, otlp: str | None) -> dict[str, str]:
    env = dict(os.environ, NATS_URL=url, SYMBOLS=symbol, LOG_LEVEL="WARNING")
    for name in [k for k in env if k.startswith("OTEL_")]:
        del env[name]
    if otlp is not None:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
    return env


async def main_async(args: argparse.Namespace, url: str, otlp: str | None) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.services}
    for run in range(args.runs):
        order = args.services[run % len(args.services) :] + args.services[: run % len(args.services)]
        for contender in order:
            symbol = f"CB{contender[:3].upper()}{run}"
            payloads = trades(symbol, args.events)
            profile = None if args.profile is None else args.profile / f"{contender}-{run}.txt"
            env = service_env(url, symbol, otlp)
            r = await one_run(url, contender, payloads, symbol, env, profile, args.rate)
            runs[contender].append(r)
            console.print(
                f"run {run + 1}/{args.runs} {contender:15} {r['absorbed_per_s']:>9,.0f}/s "
                f"({r['cpu_us_per_event']:.2f} CPU µs/event) lost {r['lost']}, "
                f"strategy dropped {r['strategy_dropped']}, publisher {r['publish_rate']:,.0f}/s, "
                f"{r['lag_samples']} lag samples, {r['traced']} traced"
            )
            if profile is not None and profile.exists():
                r["profile_top"] = top(summarise(profile), 30)
    results: dict[str, Any] = {}
    for contender, rs in runs.items():
        results[contender] = {
            "runs": rs,
            "median_absorbed_per_s": median([r["absorbed_per_s"] for r in rs]),
            "median_cpu_us_per_event": median([r["cpu_us_per_event"] for r in rs]),
            "total_lost": sum(r["lost"] + r["strategy_dropped"] for r in rs),
        }
    if "floor" in results:
        floor = [r["absorbed_per_s"] for r in runs["floor"]]
        for contender, result in results.items():
            ratios = [r["absorbed_per_s"] / f for r, f in zip(runs[contender], floor, strict=False)]
            result["median_ratio_to_floor"] = median(ratios)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0, help="publish at most this many/s (0: unpaced)")
    parser.add_argument("--services", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    parser.add_argument("--no-telemetry", action="store_true", help="no OTLP endpoint (not production)")
    parser.add_argument("--profile", type=Path, help="py-spy every run into this directory")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    info = machine()
    sink = None
    if not args.no_telemetry:  # a collector of its own: its work must not share our processes
        sink = subprocess.Popen(
            [sys.executable, "-m", "tests.otlp_receiver"], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
    try:
        otlp = sink.stdout.readline().strip() if sink is not None and sink.stdout is not None else None
        with NatsServer() as server:
            results = asyncio.run(main_async(args, server.url, otlp))
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
    show(
        "events/s absorbed per consumer process (medians)",
        ["contender", "events/s", "/ floor", "CPU µs/event", "lost (all runs)"],
        [
            [
                c,
                r["median_absorbed_per_s"],
                f"{r.get('median_ratio_to_floor', float('nan')):.2f}",
                f"{r['median_cpu_us_per_event']:.2f}",
                r["total_lost"],
            ]
            for c, r in results.items()
        ],
    )
    args.profile = None if args.profile is None else str(args.profile)
    save(args.json, {"machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
