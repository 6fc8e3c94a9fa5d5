"""Raw Binance frames -> TradeTick / DepthUpdate events on one core, beside cryptofeed, one run.

Frames are generated from Binance's documented formats like the reference script
../shared/reference/bench/cryptofeed_binance_parse.py (combined-stream ``btcusdt@aggTrade`` frames
with a random-walk price and 8-decimal strings; ``btcusdt@depth@100ms`` diffs with consecutive ids,
1-20 levels per side, 25 % deletions, on a 1000-level book). Ours: ``BinanceParser.parse`` (and,
for depth, the ``LocalBook`` procedure maintaining the book and producing the DepthUpdate events),
no NATS. cryptofeed: its own ``Binance.message_handler`` via the reference script, run with the
interpreter of a separate virtualenv holding cryptofeed 2.4.1 (never part of ``.[dev]``):

    python3 -m venv /tmp/cfvenv && /tmp/cfvenv/bin/pip install cryptofeed==2.4.1
    python -m bench.binance_parse --cryptofeed-python /tmp/cfvenv/bin/python \\
        --json bench/results/binance_parse.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench._harness import console, machine, save, show
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.parse import BinanceParser, DepthDiff, Snapshot
from services.connector_feed.events import Trade

TICK = Decimal("0.01")
MID = Decimal("65000.00")
T0_MS = 1_767_225_600_000
REFERENCE = (
    Path(__file__).parent.parent.parent / "shared" / "reference" / "bench" / "cryptofeed_binance_parse.py"
)


def _f8(value: Decimal) -> str:
    return f"{value:.8f}"


def agg_trade_frames(n: int, rng: random.Random) -> list[bytes]:
    frames, price, agg_id, trade_id, t_ms = [], MID, 3_000_000_000, 5_000_000_000, T0_MS
    for _ in range(n):
        price += TICK * rng.randint(-3, 3)
        qty = Decimal(rng.randint(1, 250_000)) / Decimal(100_000)
        t_ms += rng.randint(0, 40)
        fills = rng.randint(1, 4)
        data = {
            "e": "aggTrade",
            "E": t_ms + rng.randint(0, 3),
            "s": "BTCUSDT",
            "a": agg_id,
            "p": _f8(price),
            "q": _f8(qty),
            "f": trade_id,
            "l": trade_id + fills - 1,
            "T": t_ms,
            "m": rng.random() < 0.5,
            "M": True,
        }
        agg_id, trade_id = agg_id + 1, trade_id + fills
        frames.append(
            json.dumps({"stream": "btcusdt@aggTrade", "data": data}, separators=(",", ":")).encode()
        )
    return frames


def depth_frames(
    n: int, rng: random.Random, book_levels: int = 1000, max_levels: int = 20
) -> tuple[Snapshot, list[bytes], float]:
    bids = {MID - TICK * (i + 1): Decimal(rng.randint(1, 500_000)) / 100_000 for i in range(book_levels)}
    asks = {MID + TICK * i: Decimal(rng.randint(1, 500_000)) / 100_000 for i in range(book_levels)}
    last = 9_000_000_000
    snapshot = Snapshot(
        last,
        [(_f8(p), _f8(q)) for p, q in sorted(bids.items(), reverse=True)],
        [(_f8(p), _f8(q)) for p, q in sorted(asks.items())],
    )

    def side(book: dict[Decimal, Decimal], is_bid: bool) -> list[list[str]]:
        out, seen = [], set()
        for _ in range(rng.randint(1, max_levels)):
            offset = rng.randrange(book_levels) if rng.random() < 0.05 else int(rng.expovariate(1 / 25))
            price = MID - TICK * (offset + 1) if is_bid else MID + TICK * offset
            if price in seen:
                continue
            seen.add(price)
            if price in book and rng.random() < 0.25:
                qty = Decimal(0)
                del book[price]
            else:
                qty = Decimal(rng.randint(1, 500_000)) / 100_000
                book[price] = qty
            out.append([_f8(price), _f8(qty)])
        return out

    frames, levels, t_ms = [], 0, T0_MS
    for _ in range(n):
        first, last = last + 1, last + 1 + rng.randint(0, 40)
        t_ms += 100
        b, a = side(bids, True), side(asks, False)
        levels += len(a) + len(b)
        data = {"e": "depthUpdate", "E": t_ms, "s": "BTCUSDT", "U": first, "u": last, "b": b, "a": a}
        frames.append(
            json.dumps({"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":")).encode()
        )
    return snapshot, frames, levels / n


def timed(work: Callable[[], None], n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


def ours(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    trades = agg_trade_frames(args.n, rng)
    snapshot, diffs, mean_levels = depth_frames(args.n, rng)
    results: dict[str, Any] = {"mean_levels_per_diff": round(mean_levels, 1)}

    parser = BinanceParser("spot", "aggTrade")
    sample = parser.parse(trades[0], 1)
    assert isinstance(sample, Trade) and sample.price == json.loads(trades[0])["data"]["p"]

    def parse_trades() -> None:
        parse = parser.parse
        for frame in trades:
            parse(frame, 1)

    def parse_depth() -> None:
        book = LocalBook("binance", "BTCUSDT", futures=False)
        first, second = parser.parse(diffs[0], 1), parser.parse(diffs[1], 1)
        assert isinstance(first, DepthDiff) and isinstance(second, DepthDiff)
        book.on_diff(first)
        book.on_diff(second)
        # The snapshot covers the first diff; the second straddles it (spot: U <= L + 1 <= u).
        assert book.on_snapshot(Snapshot(first.last_update_id, snapshot.bids, snapshot.asks))
        parse, on_diff = parser.parse, book.on_diff
        for frame in diffs[2:]:
            diff = parse(frame, 1)
            assert on_diff(diff)  # type: ignore[arg-type]  # a DepthUpdate out for every diff in
        assert book.stats.gaps == 0 and book.state == "synced"

    for name, work in (("trades", parse_trades), ("depth", parse_depth)):
        wall, cpu = [], []
        for _ in range(args.runs):
            w, c = timed(work, args.n)
            wall.append(w)
            cpu.append(c)
        results[name] = {
            "runs_msgs_per_s": [round(w) for w in wall],
            "median_msgs_per_s": round(statistics.median(wall)),
            "median_msgs_per_cpu_s": round(statistics.median(cpu)),
        }
        console.print(f"ours {name}: {results[name]}")
    return results


def cryptofeed(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.cryptofeed_python:
        console.print("[yellow]no --cryptofeed-python: cryptofeed not measured[/]")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cf.json"
        subprocess.run(
            [
                args.cryptofeed_python,
                str(REFERENCE),
                "--n",
                str(args.n),
                "--runs",
                str(args.runs),
                "--seed",
                str(args.seed),
                "--executor-n",
                "0",
                "--json",
                str(out),
            ],
            check=True,
        )
        data: dict[str, Any] = json.loads(out.read_text())
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cryptofeed-python", help="python of a venv with cryptofeed==2.4.1")
    parser.add_argument("--json")
    args = parser.parse_args()
    info = machine()
    mine = ours(args)
    theirs = cryptofeed(args)
    rows = []
    for name, key in (("aggTrade -> Trade", "trades"), ("depth diff -> book -> DepthUpdate", "depth")):
        row: list[Any] = [name, mine[key]["median_msgs_per_s"], mine[key]["median_msgs_per_cpu_s"]]
        if theirs is not None:
            cf = theirs["cryptofeed_trades_noop_cb" if key == "trades" else "cryptofeed_depth_noop_cb"]
            row += [
                cf["median_msgs_per_s"],
                f"{mine[key]['median_msgs_per_s'] / cf['median_msgs_per_s']:.2f}",
                f"{mine[key]['median_msgs_per_cpu_s'] / cf['median_msgs_per_cpu_s']:.2f}",
            ]
        rows.append(row)
    show(
        "Binance frames -> events, one core (medians)",
        ["path", "ours msgs/s", "ours msgs/CPU-s", "cryptofeed msgs/s", "× wall", "× CPU"][: len(rows[0])],
        rows,
    )
    save(args.json, {"machine": info, "args": vars(args), "ours": mine, "cryptofeed": theirs})


if __name__ == "__main__":
    main()
