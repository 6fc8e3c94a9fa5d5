"""The feed's book on request (issue 13): the reply for a 5,000-level book, and the stall it causes.

A fake Binance spot (``tests/fake_binance.py``, in this process) holds a book of 5,000 levels a
side (10,000 in all) and streams, every ``--interval-ms``, one depth diff (10 levels a side get a
new quantity: the book stays 5,000 a side) and one trade. The real ``connector_feed`` runs as its
own process (``BINANCE_DEPTH_LIMIT=5000``, tracing and metrics on, exporting to an OTLP sink in a
process of its own, as ``bench.e2e_binance`` runs it) and keeps the book; a subscriber process
(``bench.book_request_sub``) records the receipt time of every ``md.BTCUSDT.trades`` / ``.depth``
message. Phases alternate within each round (order rotated per round):

- ``quiet``: no requests;
- ``full_10_per_s``: ``md.BTCUSDT.book`` requests for the whole book (5,000 levels a side), 10 a
  second (from ``bench.book_request_client``, a process of its own);
- ``full``: the same back to back (each sent when the last reply arrived): the worst case;
- ``top100``: back to back with ``{"depth": 100}``.

First, in this process: the feed's reply path on such a book (copy, sort in steps, encode, publish)
with a task beside it that notes the longest the loop was held between two of its turns - the
longest the publishing path can wait behind a reply - and the CPU a reply costs.

Per phase: the requests' round trips (requester -> NATS -> feed -> back); for every message
streamed during the phase its venue -> subscriber latency (the venue's send time, taken just
before the frame is written, to the subscriber's receipt: it includes any time the frame waited
in the feed's socket while the feed's loop was busy); and the longest gap between two
consecutive receipts beside the longest gap between two consecutive sends.

    python -m bench.book_request --rounds 3 --json bench/results/book_request.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.client import Client

from bench._harness import console, machine, median, percentile, save, show
from bench.e2e_procs import ROOT, Child, cpu_seconds, stop
from bench.pyspy_summary import py_spy
from schemas import subjects
from services.common.book import OrderBook
from services.common.natsserver import NatsServer
from services.connector_feed.events import Depth
from tests.fake_binance import FakeBinance, spot_depth_diff, spot_trade

SYMBOL = "BTCUSDT"
DEPTH_STREAM = "btcusdt@depth@100ms"
TRADE_STREAM = "btcusdt@trade"
FIRST_ID = 1_000_000  # the snapshot's lastUpdateId; diff k is U = u = FIRST_ID + k
#: phase -> (request body, requests a second; 0: back to back), or None: no requests.
PHASES: dict[str, tuple[bytes, float] | None] = {
    "quiet": None,
    "full_10_per_s": (b"", 10),
    "full": (b"", 0),
    "top100": (b'{"depth": 100}', 0),
}


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def _qty(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


class Book:
    """The venue's book: ``levels`` a side on a 0.01 tick around 50,000, diffs that keep its size."""

    def __init__(self, levels: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.bids = {_price(5_000_000 - i): _qty(self.rng.randint(1, 500_000_000)) for i in range(levels)}
        self.asks = {_price(5_000_001 + i): _qty(self.rng.randint(1, 500_000_000)) for i in range(levels)}
        self._bid_prices, self._ask_prices = list(self.bids), list(self.asks)

    def diff(self, k: int, per_side: int = 10) -> dict[str, Any]:
        changed = []
        for prices, side in ((self._bid_prices, self.bids), (self._ask_prices, self.asks)):
            levels = [(p, _qty(self.rng.randint(1, 500_000_000))) for p in self.rng.sample(prices, per_side)]
            side.update(levels)
            changed.append(levels)
        return spot_depth_diff(
            SYMBOL, FIRST_ID + k, FIRST_ID + k, changed[0], changed[1], time.time_ns() // 10**6
        )


async def stream(
    venue: FakeBinance, book: Book, first: dict[str, Any], sent: list[tuple[int, str, int]], interval_s: float
) -> None:
    """``first`` (diff 1), then a diff and a trade every ``interval_s``, each send time recorded,
    until cancelled."""
    k = 0
    while True:
        k += 1
        diff = first if k == 1 else book.diff(k)
        trade = spot_trade(SYMBOL, k, "50000.00000000", "0.01000000", k % 2 == 0, time.time_ns() // 10**6)
        now = time.time_ns()
        await venue.send(DEPTH_STREAM, diff)
        sent.append((now, "depth", FIRST_ID + k))
        now = time.time_ns()
        await venue.send(TRADE_STREAM, trade)
        sent.append((now, "trade", k))
        await asyncio.sleep(interval_s)


async def phase(client: Child, name: str, seconds: float) -> dict[str, Any]:
    """One phase: requests from the requester process (or none), while the venue streams."""
    request = PHASES[name]
    start_ns = time.time_ns()
    if request is None:
        asked: dict[str, Any] = {"rtt_ms": [], "errors": {}, "first": {}}
        await asyncio.sleep(seconds)
    else:  # the requester answers when the phase is over; this loop keeps the venue streaming
        body, rate = request
        asked = await asyncio.to_thread(
            client.call, "ask", seconds + 60, body=body.decode(), seconds=seconds, rate=rate
        )
    return {"phase": name, "start_ns": start_ns, "end_ns": time.time_ns(), **asked}


def analyse(
    window: dict[str, Any], sent: list[tuple[int, str, int]], rows: list[list[Any]]
) -> dict[str, Any]:
    """Latency and gaps of the messages sent within the window; the requests' round trips."""
    received = {(kind, venue_id): ns for ns, kind, venue_id, _, snapshot in rows if not snapshot}
    inside = [(ns, kind, i) for ns, kind, i in sent if window["start_ns"] <= ns < window["end_ns"]]
    latencies = sorted((received[(kind, i)] - ns) / 1000 for ns, kind, i in inside if (kind, i) in received)
    receipts = sorted(received[(kind, i)] for _, kind, i in inside if (kind, i) in received)
    sends = [ns for ns, _, _ in inside]
    rtts = sorted(window["rtt_ms"])
    return {
        "phase": window["phase"],
        "messages": len(inside),
        "lost": len(inside) - len(latencies),
        "latency_us": {q: percentile(latencies, p) for q, p in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))}
        | {"max": latencies[-1] if latencies else float("nan")},
        "max_receipt_gap_ms": max((b - a for a, b in itertools.pairwise(receipts)), default=0) / 1e6,
        "max_send_gap_ms": max((b - a for a, b in itertools.pairwise(sends)), default=0) / 1e6,
        "requests": len(rtts) + sum(window["errors"].values()),
        "request_errors": window["errors"],
        "reply_ms": {q: percentile(rtts, p) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": rtts[-1] if rtts else float("nan")},
        "reply": window["first"],
    }


async def run(args: argparse.Namespace, url: str, otlp: str | None, tmp: Path) -> dict[str, Any]:
    book = Book(args.levels)
    sent: list[tuple[int, str, int]] = []
    # The snapshot is the book after diff 1, and diff 1 is the first the feed sees: Binance's spot
    # procedure wants a snapshot no older than the first buffered diff (L >= U).
    first = book.diff(1)
    async with FakeBinance("spot") as venue:
        venue.set_snapshot(SYMBOL, FIRST_ID + 1, list(book.bids.items()), list(book.asks.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BINANCE_", "STUB_"))}
        env |= {
            "NATS_URL": url,
            "SYMBOLS": SYMBOL,
            "DATA_SOURCE": "binance_ws",
            "BINANCE_MARKET": "spot",
            "BINANCE_WS_URL": venue.ws_url,
            "BINANCE_REST_URL": venue.rest_url,
            "BINANCE_DEPTH_LIMIT": "5000",
            "MD_SNAPSHOT_INTERVAL_S": "0",
            "LOG_LEVEL": os.environ.get("BENCH_FEED_LOG_LEVEL", "WARNING"),
        }
        if otlp is not None:
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        sub = Child(
            [sys.executable, "-m", "bench.book_request_sub", "--url", url, "--symbol", SYMBOL],
            tmp / "sub.log",
        )
        client = Child(
            [sys.executable, "-m", "bench.book_request_client", "--url", url, "--symbol", SYMBOL],
            tmp / "client.log",
        )
        feed_log = (tmp / "feed.log").open("wb")
        feed = subprocess.Popen(
            [sys.executable, "-m", "services.connector_feed"],
            env=env,
            cwd=ROOT,
            stdout=feed_log,
            stderr=feed_log,
        )
        nc = await nats.connect(url)
        streaming: asyncio.Task[None] | None = None
        spy: subprocess.Popen[bytes] | None = None
        try:
            sub.read(30)
            client.read(30)
            await venue.wait_for_subscribers([DEPTH_STREAM, TRADE_STREAM], timeout=30)
            streaming = asyncio.create_task(stream(venue, book, first, sent, args.interval_ms / 1000))
            await until_synced(nc)
            await asyncio.sleep(1.0)
            spy = None if args.profile is None else py_spy(feed.pid, Path(args.profile))
            cpu_before = cpu_seconds(feed.pid)
            windows = []
            names = list(PHASES)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    windows.append(await phase(client, name, args.phase_s) | {"round": r})
                    console.print(f"round {r + 1} {name:7} done ({len(windows[-1]['rtt_ms'])} replies)")
            feed_cpu_s = cpu_seconds(feed.pid) - cpu_before
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            await asyncio.sleep(1.0)
            dump = sub.call("dump", timeout_s=60)
            health = orjson.loads((await nc.request(subjects.health("connector_feed"), b"", timeout=5)).data)
        finally:
            if streaming is not None:
                streaming.cancel()
            await nc.drain()
            stop(feed)
            if spy is not None:
                spy.wait(timeout=60)
            feed_log.close()
            sub.close()
            client.close()
    phases = [analyse(w, sent, dump["rows"]) | {"round": w["round"]} for w in windows]
    return {
        "phases": phases,
        "feed_cpu_s": feed_cpu_s,
        "subscriber_errors": dump["errors"],
        "feed_health": health,
    }


async def loop_blocking(url: str, levels: int, replies: int = 30) -> dict[str, Any]:
    """The reply path on a book like the feed's (``OrderBook.copy`` -> ``BookCopy.sorted`` ->
    ``Depth.wire`` -> publish), in this process, with a task beside it that notes how long the loop
    was held between two of its turns: the longest the publishing path would wait. The same task
    alone, as long, is the baseline (what the host's scheduler does to any process here)."""
    source = Book(levels)
    book = OrderBook()
    book.reset(list(source.bids.items()), list(source.asks.items()), FIRST_ID)
    for k in range(2, 500):  # the dict no longer in price order, as after a while of diffs
        diff = source.diff(k)
        book.apply(diff["b"], diff["a"], FIRST_ID + k)
    nc = await nats.connect(url)

    async def watched(work: Any) -> list[float]:
        held: list[float] = []
        running = True

        async def monitor() -> None:
            while running:
                before = time.perf_counter()
                await asyncio.sleep(0)
                held.append((time.perf_counter() - before) * 1000)

        watcher = asyncio.create_task(monitor())
        await work()
        running = False
        await watcher
        return sorted(held)

    cpu: list[float] = []
    sizes: list[int] = []

    async def answer() -> None:
        for _ in range(replies):
            started = time.process_time()
            bids, asks = await book.copy().sorted()
            now = time.time_ns()
            reply = Depth("binance", SYMBOL, bids, asks, True, None, FIRST_ID, None, now, now, 1, "run")
            sizes.append(len(wire := reply.wire()))
            await nc.publish("bench.book.reply", wire)
            await nc.flush()
            cpu.append((time.process_time() - started) * 1000)

    busy_s = time.perf_counter()
    with_replies = await watched(answer)
    busy_s = time.perf_counter() - busy_s

    async def idle() -> None:
        await asyncio.sleep(busy_s)

    baseline = await watched(idle)
    await nc.close()

    def holds(values: list[float]) -> dict[str, float]:
        return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": values[-1]}

    return {
        "reply_cpu_ms_median": median(cpu),
        "reply_bytes": sizes[0],
        "hold_ms_with_replies": holds(with_replies),
        "hold_ms_baseline": holds(baseline),
    }


async def until_synced(nc: Client, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    why: object = None
    while time.monotonic() < deadline:
        try:
            reply = await nc.request(subjects.book(SYMBOL), b'{"depth": 1}', timeout=5)
            why = (reply.headers or {}).get("Nats-Service-Error")
            if why is None:
                return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            why = error
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the feed never answered md.{SYMBOL}.book: {why!r}")


def summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PHASES:
        rows = [p for p in phases if p["phase"] == name]
        out[name] = {
            "latency_p50_us": median([p["latency_us"]["p50"] for p in rows]),
            "latency_p99_us": median([p["latency_us"]["p99"] for p in rows]),
            "latency_max_us": median([p["latency_us"]["max"] for p in rows]),
            "max_receipt_gap_ms": median([p["max_receipt_gap_ms"] for p in rows]),
            "max_send_gap_ms": median([p["max_send_gap_ms"] for p in rows]),
            "lost": sum(p["lost"] for p in rows),
            "requests": sum(p["requests"] for p in rows),
        }
        if PHASES[name] is not None:
            out[name] |= {
                "reply_p50_ms": median([p["reply_ms"]["p50"] for p in rows]),
                "reply_p99_ms": median([p["reply_ms"]["p99"] for p in rows]),
                "reply_max_ms": max(p["reply_ms"]["max"] for p in rows),
                "reply": rows[0]["reply"],
                "request_errors": [p["request_errors"] for p in rows if p["request_errors"]],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, default=5000, help="levels a side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=4.0)
    parser.add_argument("--interval-ms", type=float, default=2.0, help="a diff and a trade this often")
    parser.add_argument("--no-telemetry", action="store_true")
    parser.add_argument("--logs", help="keep every process's log in this directory")
    parser.add_argument("--profile", help="py-spy the feed over the measured phases into this file")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="hftfeed-book-") as tmp_name, NatsServer() as server:
        tmp = Path(args.logs or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        sink = (
            None
            if args.no_telemetry
            else Child([sys.executable, "-m", "tests.otlp_receiver"], tmp / "otlp.log")
        )
        try:
            otlp = sink.read_line(30) if sink is not None else None
            in_process = asyncio.run(loop_blocking(server.url, args.levels))
            console.print(f"in process: {in_process}")
            result = asyncio.run(run(args, server.url, otlp, tmp)) | {"in_process": in_process}
        finally:
            if sink is not None:
                sink.close()
    result["summary"] = summary(result["phases"])
    rows = []
    for name, s in result["summary"].items():
        rows.append(
            [
                name,
                f"{s.get('reply_p50_ms', float('nan')):.1f} / {s.get('reply_p99_ms', float('nan')):.1f}",
                f"{s['latency_p50_us']:.0f} / {s['latency_p99_us']:.0f} / {s['latency_max_us']:.0f}",
                f"{s['max_receipt_gap_ms']:.1f} (sends {s['max_send_gap_ms']:.1f})",
                s["lost"],
            ]
        )
    show(
        f"md.{SYMBOL}.book, {args.levels:,} levels a side (medians of {args.rounds} rounds)",
        ["phase", "reply p50 / p99 ms", "venue->sub p50 / p99 / max µs", "max gap ms", "lost"],
        rows,
    )
    save(args.json, {"machine": info, "args": vars(args), **result})


if __name__ == "__main__":
    main()
