"""CPU per message of a consumer, in one process, without a socket: where the time goes.

The same protocol bytes the server sends (``MSG md.<SYMBOL>.trades 1 <n>``, valid ``TradeTick``
payloads) are fed, 32 KiB at a time, to the client's protocol parser, and each contender's CPU
time is measured until it has handled every message (best of ``--repeat``; the contenders
alternate). No publisher, no server, no other process competes, so the shares are steadier than
``bench.consumers``' rates on a shared host.

- ``nats-py cb``: nats-py's own parser and ``cb=`` delivery (Msg, queue, task) to a no-op callback;
- ``batched``: ``services.common.delivery`` (our parser fast path and batch) to a no-op handler;
- ``batched + decode``: the same, each message decoded by ``schemas.wire.decode_trade``;
- ``context``, ``strategy_engine``: the services' own subscriber and handlers behind it (the
  ``vwap`` strategy in its runner), as their ``__main__`` builds them, telemetry off.

    python -m bench.consumer_inprocess --events 100000 --repeat 3 --json bench/results/consumer_inprocess.json
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bench._harness import console, machine, save, show
from bench.consumer_load import trades
from schemas.wire import decode_trade
from services.common.bus import Bus
from services.common.delivery import Batch, BatchingClient, Handler
from services.common.telemetry import TelemetrySettings, setup_telemetry
from services.context.service import ContextService
from services.context.settings import ContextSettings
from services.strategy_engine.service import StrategyEngine
from services.strategy_engine.settings import StrategySettings

SYMBOL = "CBX"
CHUNK = 32 * 1024


async def _feed(client: Client, chunks: list[bytes], done: Callable[[], bool]) -> float:
    started = time.process_time()
    for chunk in chunks:
        await client._ps.parse(chunk)
        await asyncio.sleep(0)  # the delivery tasks run between chunks, as between socket reads
    while not done():
        await asyncio.sleep(0)
    return time.process_time() - started


async def nats_py_cb(chunks: list[bytes], n: int) -> float:
    client, count = Client(), [0]

    async def callback(_: Msg) -> None:
        count[0] += 1

    async def on_error(_: Exception) -> None:
        pass

    sub = Subscription(
        client, 1, "md.*.trades", cb=callback, pending_msgs_limit=10 * n, pending_bytes_limit=0
    )
    sub._start(on_error)  # type: ignore[no-untyped-call]
    client._subs[1] = sub
    try:
        return await _feed(client, chunks, lambda: count[0] >= n)
    finally:
        sub._stop_processing()


async def batched(chunks: list[bytes], n: int, decode: bool) -> float:
    client, count = BatchingClient(), [0]

    def handler(subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
        if decode:
            decode_trade(data)
        count[0] += 1
        return False

    batch = Batch(handler, print, print, 10 * n, 0)
    client.batches[1] = batch
    task = asyncio.create_task(batch.run())
    try:
        return await _feed(client, chunks, lambda: count[0] >= n)
    finally:
        task.cancel()


async def service(chunks: list[bytes], n: int, name: str) -> float:
    client = BatchingClient()
    bus = Bus(client, name)
    tasks: list[asyncio.Task[None]] = []

    async def subscribe_batched(subject: str, handler: Handler, pending_msgs_limit: int = 0) -> None:
        batch = Batch(handler, print, print, 10 * n, 0)
        client.batches[len(client.batches) + 1] = batch  # sid 1: trades, as in the bytes fed
        tasks.append(asyncio.create_task(batch.run()))

    async def flush(*_: object) -> None:
        pass

    bus.subscribe_batched = subscribe_batched  # type: ignore[method-assign,assignment]
    client.flush = flush  # type: ignore[method-assign,assignment]
    off = setup_telemetry(name, TelemetrySettings(otel_sdk_disabled=True))
    done: Callable[[], bool]
    subscriber: Any
    if name == "strategy_engine":
        engine = StrategyEngine(bus, StrategySettings(symbols=[SYMBOL]), off)
        tasks.extend(asyncio.create_task(r.run()) for r in engine.runners)
        subscriber = engine.subscriber
        done = lambda: engine.runners[0].processed >= n  # noqa: E731
    else:
        context = ContextService(bus, ContextSettings(symbols=[SYMBOL]), off)
        subscriber = context.subscriber
        done = lambda: context.subscriber.consumed["trade"] >= n  # noqa: E731
    await subscriber.start()
    try:
        return await _feed(client, chunks, done)
    finally:
        subscriber.stop()
        for task in tasks:
            task.cancel()


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    n = args.events
    stream = b"".join(
        b"MSG md.%s.trades 1 %d\r\n%s\r\n" % (SYMBOL.encode(), len(p), p) for p in trades(SYMBOL, n)
    )
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    contenders: dict[str, Callable[[], Awaitable[float]]] = {
        "nats-py cb (no-op)": lambda: nats_py_cb(chunks, n),
        "batched (no-op)": lambda: batched(chunks, n, False),
        "batched + decode": lambda: batched(chunks, n, True),
        "context": lambda: service(chunks, n, "context"),
        "strategy_engine": lambda: service(chunks, n, "strategy_engine"),
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, run in contenders.items():
            best[name] = min(best.get(name, float("inf")), await run() / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    info = machine()
    best = uvloop.run(main_async(args))
    floor = best["nats-py cb (no-op)"]
    console.print("CPU µs per message, best of", args.repeat)
    show(
        "per message, in process (no socket)",
        ["path", "CPU µs/msg", "/ nats-py cb (no-op)", "msgs/s per core"],
        [[k, f"{v:.2f}", f"{v / floor:.2f}", 1e6 / v] for k, v in best.items()],
    )
    save(args.json, {"machine": info, "args": vars(args), "cpu_us_per_msg": best})


if __name__ == "__main__":
    main()
