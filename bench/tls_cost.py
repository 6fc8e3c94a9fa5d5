"""What TLS costs on the bus: plain vs TLS vs mutual TLS (the secure stack's deploy/nats config),
same run, same machine, through our own ``Bus`` (handshake first, the stack's identities).

Per mode and repetition (modes alternate, so drift hits all alike):
  connect   ms per ``Bus.connect`` (median of 20);
  publish   msgs/s of one publisher, N x 200 B then a flush;
  pub->sub  msgs/s delivered to a subscriber on a second connection;
  latency   one-way publish -> subscriber µs at a paced 5,000 msgs/s (p50/p99), send time in the
            payload (two connections, one process, one clock);
  rtt       request -> reply µs (p50/p99), 2,000 requests after 200 warm-up.

    python -m bench.tls_cost --runs 3 --json bench/results/tls_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from nats.aio.msg import Msg

from bench._harness import console, machine, median, percentile, save, show
from services.common.bus import Bus
from services.common.logging import configure_logging
from services.common.natsauth import NatsSecurity
from services.common.natsserver import NatsServer, secure_server, server_tls_env
from services.common.pki import Identity

PAYLOAD = b"x" * 200
Connect = Callable[[str], NatsSecurity]


def identity(ids: dict[str, Identity], name: str, client_cert: bool) -> NatsSecurity:
    i = ids[name]
    if not client_cert:
        return NatsSecurity(tls_ca=i.ca)
    return NatsSecurity(tls_ca=i.ca, tls_cert=i.cert, tls_key=i.key, inbox_prefix=f"_INBOX.{name}")


async def measure(url: str, security: Connect, n: int) -> dict[str, float]:
    connects = []
    for _ in range(20):
        started = time.perf_counter()
        bus = await Bus.connect(url, "bench", 5.0, security("reader"))
        connects.append((time.perf_counter() - started) * 1000)
        await bus.drain()
    feed = await Bus.connect(url, "bench-pub", 5.0, security("connector_feed"))
    reader = await Bus.connect(url, "bench-sub", 5.0, security("reader"))
    responder = await Bus.connect(url, "bench-rsp", 5.0, security("context"))
    try:
        started = time.perf_counter()
        for _ in range(n):
            await feed.publish("md.BENCHPUB.trades", PAYLOAD)
        await feed.nc.flush(30)
        publish = n / (time.perf_counter() - started)

        got = 0
        done = asyncio.Event()

        async def count(_: Msg) -> None:
            nonlocal got
            got += 1
            if got == n:
                done.set()

        sub = await reader.subscribe("md.BENCHSUB.trades", count)
        await reader.nc.flush()
        started = time.perf_counter()
        for _ in range(n):
            await feed.publish("md.BENCHSUB.trades", PAYLOAD)
        await asyncio.wait_for(done.wait(), 120)
        delivered = n / (time.perf_counter() - started)
        await sub.unsubscribe()

        latencies = await paced_latency(feed, reader, rate=5000, seconds=3.0)

        async def answer(msg: Msg) -> None:
            await msg.respond(msg.data)

        await responder.subscribe("context.BENCH.snapshot", answer)
        await responder.nc.flush()
        rtts = []
        for i in range(2200):
            started = time.perf_counter()
            await reader.request("context.BENCH.snapshot", PAYLOAD, timeout_s=2)
            if i >= 200:
                rtts.append((time.perf_counter() - started) * 1e6)
        rtts.sort()
    finally:
        for bus in (feed, reader, responder):
            await bus.drain()
    return {
        "connect_ms": median(connects),
        "publish_msgs_s": publish,
        "pub_sub_msgs_s": delivered,
        "latency_p50_us": percentile(latencies, 0.5),
        "latency_p99_us": percentile(latencies, 0.99),
        "rtt_p50_us": percentile(rtts, 0.5),
        "rtt_p99_us": percentile(rtts, 0.99),
    }


async def paced_latency(pub: Bus, sub: Bus, rate: int, seconds: float) -> list[float]:
    latencies: list[float] = []

    async def on_msg(msg: Msg) -> None:
        latencies.append((time.time_ns() - int(msg.data[:19])) / 1000)

    subscription = await sub.subscribe("md.BENCHLAT.trades", on_msg)
    await sub.nc.flush()
    start, sent, total = time.monotonic(), 0, int(rate * seconds)
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate))
        while sent < due:
            sent += 1
            await pub.publish("md.BENCHLAT.trades", str(time.time_ns()).encode() + PAYLOAD[19:])
        await asyncio.sleep(0.001)
    await pub.nc.flush()
    deadline = time.monotonic() + 10
    while len(latencies) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await subscription.unsubscribe()
    return sorted(latencies[len(latencies) // 5 :])  # the first fifth is warm-up


def tls_only_config(directory: Path) -> Path:
    """Server-authenticated TLS, no client certificates, no users (the "TLS" mode)."""
    config = directory / "tls-only.conf"
    config.write_text(
        "tls { cert_file: $NATS_SERVER_TLS_CERT, key_file: $NATS_SERVER_TLS_KEY, "
        "ca_file: $NATS_SERVER_TLS_CA, timeout: 2, handshake_first: auto }\n"
    )
    return config


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, list[dict[str, float]]]:
    mtls, ids = secure_server(tmp / "pki")
    tls = NatsServer(config=tls_only_config(tmp), env=server_tls_env(ids["server"]), scheme="tls")
    plain = NatsServer()
    modes: dict[str, tuple[NatsServer, Connect]] = {
        "plain": (plain, lambda _: NatsSecurity()),
        "TLS": (tls, lambda name: identity(ids, name, client_cert=False)),
        "mTLS (deploy/nats)": (mtls, lambda name: identity(ids, name, client_cert=True)),
    }
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for server, _ in modes.values():
        server.start()
    try:
        for run in range(args.runs):
            for mode, (server, security) in modes.items():
                r = await measure(server.url, security, args.n)
                results[mode].append(r)
                console.print(
                    f"run {run + 1}/{args.runs} {mode}: connect {r['connect_ms']:.2f} ms, publish "
                    f"{r['publish_msgs_s']:,.0f}/s, pub->sub {r['pub_sub_msgs_s']:,.0f}/s, latency p50 "
                    f"{r['latency_p50_us']:.0f} µs p99 {r['latency_p99_us']:.0f}, "
                    f"rtt p50 {r['rtt_p50_us']:.0f} µs"
                )
    finally:
        for server, _ in modes.values():
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000, help="messages per throughput test")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    configure_logging("WARNING", stream=sys.stderr)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="tls-cost-") as tmp:
        results = uvloop.run(bench(args, Path(tmp)))
    keys = list(next(iter(results.values()))[0])
    medians: dict[str, Any] = {
        mode: {k: median([r[k] for r in runs]) for k in keys} for mode, runs in results.items()
    }
    show(
        f"TLS cost (medians of {args.runs} runs)",
        ["mode", *keys],
        [
            [mode, *(f"{m[k]:,.2f}" if k == "connect_ms" else f"{m[k]:,.0f}" for k in keys)]
            for mode, m in medians.items()
        ],
    )
    if args.json:
        save(args.json, {"machine": info, "args": vars(args), "runs": results, "medians": medians})


if __name__ == "__main__":
    main()
