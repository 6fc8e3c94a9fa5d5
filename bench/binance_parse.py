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


class Ours:
    """Our side of the bench: frames built once, then one timed pass per round."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(args.seed)
        self.n = args.n
        self.trades = agg_trade_frames(args.n, rng)
        self.snapshot, self.diffs, self.mean_levels = depth_frames(args.n, rng)
        parser = BinanceParser("spot", "aggTrade")
        sample = parser.parse(self.trades[0], 1)
        assert isinstance(sample, Trade) and sample.price == json.loads(self.trades[0])["data"]["p"]

    def parse_trades(self) -> None:
        parse = BinanceParser("spot", "aggTrade").parse
        for frame in self.trades:
            parse(frame, 1)

    def parse_depth(self) -> None:
        parser = BinanceParser("spot", "aggTrade")
        book = LocalBook("binance", "BTCUSDT", futures=False)
        first, second = parser.parse(self.diffs[0], 1), parser.parse(self.diffs[1], 1)
        assert isinstance(first, DepthDiff) and isinstance(second, DepthDiff)
        book.on_diff(first)
        book.on_diff(second)
        # The snapshot covers the first diff; the second straddles it (spot: U <= L + 1 <= u).
        assert book.on_snapshot(Snapshot(first.last_update_id, self.snapshot.bids, self.snapshot.asks))
        parse, on_diff = parser.parse, book.on_diff
        for frame in self.diffs[2:]:
            diff = parse(frame, 1)
            assert on_diff(diff)  # type: ignore[arg-type]  # a DepthUpdate out for every diff in
        assert book.stats.gaps == 0 and book.state == "synced"
        # Every diff took the fast path (a miss would mean the bench measures the full parser).
        assert parser.fast_depth.misses <= 1, parser.fast_depth.misses  # the first: symbol not yet met

    def round(self) -> dict[str, tuple[float, float]]:
        return {"trades": timed(self.parse_trades, self.n), "depth": timed(self.parse_depth, self.n)}


def cryptofeed(args: argparse.Namespace) -> dict[str, Any]:
    """One run of cryptofeed's own handler, by the reference script, in its own interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cf.json"
        subprocess.run(
            [
                args.cryptofeed_python,
                str(REFERENCE),
                "--n",
                str(args.n),
                "--runs",
                "1",
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
    mine = Ours(args)
    ours_runs: dict[str, list[tuple[float, float]]] = {"trades": [], "depth": []}
    theirs_runs: dict[str, list[tuple[float, float]]] = {"trades": [], "depth": []}
    # Rounds alternate ours and cryptofeed, so a slow spell of this shared host falls on both.
    for round_no in range(1, args.runs + 1):
        for key, result in mine.round().items():
            ours_runs[key].append(result)
        console.print(
            f"round {round_no} ours: " + ", ".join(f"{k} {v[-1][0]:,.0f}/s" for k, v in ours_runs.items())
        )
        if not args.cryptofeed_python:
            continue
        cf = cryptofeed(args)
        for key, name in (("trades", "cryptofeed_trades_noop_cb"), ("depth", "cryptofeed_depth_noop_cb")):
            theirs_runs[key].append((cf[name]["median_msgs_per_s"], cf[name]["median_msgs_per_cpu_s"]))
        console.print(
            f"round {round_no} cryptofeed: "
            + ", ".join(f"{k} {v[-1][0]:,.0f}/s" for k, v in theirs_runs.items())
        )
    if not args.cryptofeed_python:
        console.print("[yellow]no --cryptofeed-python: cryptofeed not measured[/]")
    results: dict[str, Any] = {"mean_levels_per_diff": round(mine.mean_levels, 1)}
    rows = []
    for name, key in (("aggTrade -> Trade", "trades"), ("depth diff -> book -> DepthUpdate", "depth")):
        wall = [w for w, _ in ours_runs[key]]
        cpu = [c for _, c in ours_runs[key]]
        entry: dict[str, Any] = {
            "runs_msgs_per_s": [round(w) for w in wall],
            "median_msgs_per_s": round(statistics.median(wall)),
            "median_msgs_per_cpu_s": round(statistics.median(cpu)),
        }
        row: list[Any] = [name, entry["median_msgs_per_s"], entry["median_msgs_per_cpu_s"]]
        if theirs_runs[key]:
            cf_wall = [w for w, _ in theirs_runs[key]]
            cf_cpu = [c for _, c in theirs_runs[key]]
            ratios = [mine_w / cf_w for mine_w, cf_w in zip(wall, cf_wall, strict=True)]
            entry |= {
                "cryptofeed_runs_msgs_per_s": [round(w) for w in cf_wall],
                "cryptofeed_median_msgs_per_s": round(statistics.median(cf_wall)),
                "cryptofeed_median_msgs_per_cpu_s": round(statistics.median(cf_cpu)),
                "ratio_per_round": [round(r, 2) for r in ratios],
                "median_ratio": round(statistics.median(ratios), 2),
            }
            row += [
                entry["cryptofeed_median_msgs_per_s"],
                " ".join(f"{r:.2f}" for r in ratios),
                f"{statistics.median(ratios):.2f}",
                f"{entry['median_msgs_per_cpu_s'] / entry['cryptofeed_median_msgs_per_cpu_s']:.2f}",
            ]
        results[key] = entry
        rows.append(row)
    show(
        "Binance frames -> events, one core (medians)",
        ["path", "ours msgs/s", "ours msgs/CPU-s", "cryptofeed msgs/s", "× per round", "× median", "× CPU"][
            : len(rows[0])
        ],
        rows,
    )
    save(args.json, {"machine": info, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
