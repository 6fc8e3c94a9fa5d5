"""Medians, within-run ratios and issue 12's targets for ``bench/e2e_binance.py``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from bench._harness import console, median, percentile, show

WIDTH = 140  # wide enough for one line per row, even when the output is not a terminal
METRICS = {
    "throughput": ("trades_per_s", "lost", "cpu_us_per_trade"),
    "latency": ("p50_us", "p90_us", "p99_us"),
    "quiet": ("p50_us", "p90_us", "p99_us", "max_us"),
}


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> contender -> metric -> median over the successful rounds (and ``rounds`` ok)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, metrics in METRICS.items():
        for run in runs:
            if run["scenario"] != scenario or "error" in run:
                continue
            out.setdefault(scenario, {}).setdefault(run["contender"], {})
        for contender, cell in out.get(scenario, {}).items():
            ok = [
                r
                for r in runs
                if r["scenario"] == scenario and r["contender"] == contender and "error" not in r
            ]
            cell["rounds"] = len(ok)
            for metric in metrics:
                cell[metric] = median([float(r[metric]) for r in ok])
    return out


def pooled(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> contender -> p50/p90/p99/max over every latency of every successful round."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        if "latencies_us" in run:
            cell = out.setdefault(run["scenario"], {}).setdefault(run["contender"], {})
            cell.setdefault("n", 0)
            cell["n"] += len(run["latencies_us"])
    for scenario, by in out.items():
        for contender, cell in by.items():
            lat = sorted(
                x
                for r in runs
                if r["scenario"] == scenario and r["contender"] == contender
                for x in r.get("latencies_us", [])
            )
            for q in (0.5, 0.9, 0.99):
                cell[f"p{round(q * 100)}_us"] = percentile(lat, q)
            cell["max_us"] = lat[-1] if lat else math.nan
    return out


def _get(m: dict[str, dict[str, dict[str, float]]], scenario: str, contender: str, metric: str) -> float:
    return m.get(scenario, {}).get(contender, {}).get(metric, math.nan)


def _fmt(value: float, digits: int = 0) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "MISSED"


def _check(value: float, ok: bool) -> bool | None:
    return None if math.isnan(value) else ok


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    m = medians(runs)
    pool = pooled(runs)  # quiet runs keep every latency: ~200 trades a run make a noisy p99 alone
    contenders = list(dict.fromkeys(r["contender"] for r in runs))
    rows = []
    for c in contenders:
        rows.append(
            [
                c,
                _fmt(_get(m, "throughput", c, "trades_per_s")),
                _fmt(_get(m, "throughput", c, "lost")),
                _fmt(_get(m, "throughput", c, "cpu_us_per_trade"), 1),
                " / ".join(_fmt(_get(m, "latency", c, k)) for k in ("p50_us", "p90_us", "p99_us")),
                " / ".join(_fmt(_get(pool, "quiet", c, k)) for k in ("p50_us", "p90_us", "p99_us")),
            ]
        )
    show(
        f"End to end: fake Binance -> process -> NATS -> subscriber (medians of {args.rounds} rounds)",
        [
            "contender",
            f"trades/s ({args.throughput_trades:,} back to back)",
            "lost",
            "CPU µs/trade",
            f"µs p50 / p90 / p99 @ {args.latency_rate:g}/s",
            f"quiet µs p50 / p90 / p99 ({args.quiet_gap_ms} ms gaps, all rounds pooled)",
        ],
        rows,
        width=WIDTH,
    )
    ratios: dict[str, float] = {}
    for other in ("cryptofeed", "floor"):
        ratios[f"throughput ours/{other}"] = _get(m, "throughput", "ours", "trades_per_s") / _get(
            m, "throughput", other, "trades_per_s"
        )
        ratios[f"p50 ours/{other}"] = _get(m, "latency", "ours", "p50_us") / _get(
            m, "latency", other, "p50_us"
        )
    floor_p99 = _get(pool, "quiet", "floor", "p99_us")
    quiet_ours = [c for c in contenders if c.startswith("ours") and c in m.get("quiet", {})]
    for c in quiet_ours:
        ratios[f"quiet p99 {c} - floor (µs)"] = _get(pool, "quiet", c, "p99_us") - floor_p99
    targets = {
        "throughput >= 1.25x cryptofeed": _check(
            ratios["throughput ours/cryptofeed"], ratios["throughput ours/cryptofeed"] >= 1.25
        ),
        "throughput >= 0.8x floor": _check(
            ratios["throughput ours/floor"], ratios["throughput ours/floor"] >= 0.8
        ),
        "p50 <= 1.1x floor": _check(ratios["p50 ours/floor"], ratios["p50 ours/floor"] <= 1.1),
        "p50 below cryptofeed": _check(ratios["p50 ours/cryptofeed"], ratios["p50 ours/cryptofeed"] < 1.0),
    }
    for c in quiet_ours:
        diff = ratios[f"quiet p99 {c} - floor (µs)"]
        targets[f"quiet p99 within 1 ms of the floor ({c})"] = _check(diff, diff <= 1000)
    show(
        "ours against the others, same run",
        ["ratio", "value", "issue 12 target"],
        [[k, _fmt(v, 0 if "µs" in k else 2), ""] for k, v in ratios.items()]
        + [[k, "", _verdict(v)] for k, v in targets.items()],
        width=WIDTH,
    )
    failed = [r for r in runs if "error" in r]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/red]: see 'error' in the JSON")
    return {"medians": m, "pooled": pool, "ratios": ratios, "targets": targets}
