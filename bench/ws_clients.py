"""Which WebSocket client reads Binance frames fastest: websockets, aiohttp, picows, side by side.

    python -m bench.ws_clients --json bench/results/ws_clients.json

The fake Binance of the end-to-end bench (``bench/e2e_fake.py``, its own process) serves the
combined stream ``btcusdt@trade/btcusdt@depth@100ms``; each client (``bench/ws_client_runner.py``,
its own process, uvloop) stores ``(receipt ns, frame)`` per frame and nothing else.

* burst: N trades back to back with one depth diff per 20 trades; frames/s = burst frames /
  (client's receipt of the end marker - fake's first send);
* paced: trades at a steady rate (depth diffs every 20 trades); receive latency = client receipt -
  fake send, per trade id, on one host clock.

``raw`` is a hand-written reader (frame headers parsed in Python): the ceiling for this fake, and
a check that the fake is not the bottleneck. The clients run in a throwaway venv
(``~/.cache/hftfeed-bench/wsvenv``: picows, and the same websockets and aiohttp versions as this
interpreter) created on demand; picows is not a project dependency.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench._harness import console, machine, median, percentile, save, show
from bench.e2e_procs import CACHE, Child, ensure_venv, stop

RUNNER = Path(__file__).parent / "ws_client_runner.py"
STREAMS = "btcusdt@trade/btcusdt@depth@100ms"
CLIENTS = ("raw", "websockets", "websockets-bytes", "aiohttp", "picows")


def start_fake(trades: int, diffs: int, log: Path) -> tuple[Child, int]:
    fake = Child(
        [sys.executable, "-m", "bench.e2e_fake", "--trades", str(trades), "--diffs", str(diffs)], log
    )
    return fake, int(fake.read(120)["port"])


def latency_stats(
    first_id: int, send_ns: list[int], ids: list[int], recv_ns: list[int], keep: bool = False
) -> dict[str, Any]:
    """Join receipts to sends by trade id: delivered, lost, duplicates, latency percentiles (µs);
    with ``keep``, every latency too (``latencies_us``, in trade order)."""
    first_seen: dict[int, int] = {}
    duplicates = 0
    for trade_id, ns in zip(ids, recv_ns, strict=True):
        k = trade_id - first_id
        if 0 <= k < len(send_ns):
            if k in first_seen:
                duplicates += 1
            else:
                first_seen[k] = ns
    in_order = [(first_seen[k] - send_ns[k]) / 1000 for k in sorted(first_seen)]
    lat = sorted(in_order)
    span_s = (max(first_seen.values()) - send_ns[0]) / 1e9 if first_seen else float("nan")
    kept = {"latencies_us": [round(x) for x in in_order]} if keep else {}
    return kept | {
        "sent": len(send_ns),
        "delivered": len(first_seen),
        "lost": len(send_ns) - len(first_seen),
        "duplicates": duplicates,
        "trades_per_s": len(first_seen) / span_s if first_seen else 0.0,
        "p50_us": percentile(lat, 0.5),
        "p90_us": percentile(lat, 0.9),
        "p99_us": percentile(lat, 0.99),
        "max_us": lat[-1] if lat else float("nan"),
    }


def run_client(fake: Child, port: int, python: str, client: str, plan: dict[str, Any]) -> dict[str, Any]:
    """One client process reading one plan from the fake; frames/s and receive latency."""
    fake.call("arm", warm=False)
    url = f"ws://127.0.0.1:{port}/stream?streams={STREAMS}"
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "received.json"
        argv = [python, str(RUNNER), client, url, str(out)]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while fake.call("status")["ws_connections"] < 1:
                if process.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise RuntimeError(f"{client} did not connect: {err.read().decode()[-2000:]}")
                time.sleep(0.05)
            time.sleep(0.3)
            go = fake.call("go", plan={**plan, "end_marker": True})
            sent = fake.call("result", timeout_s=600)
            process.wait(timeout=120)
        finally:
            stop(process)
        if process.returncode:
            err.seek(0)
            raise RuntimeError(f"{client} failed ({process.returncode}): {err.read().decode()[-2000:]}")
        got = orjson.loads(out.read_bytes())
    stats = latency_stats(go["first_id"], sent["send_ns"], got["trade_ids"], got["recv_ns"])
    stats["frames_per_s"] = sent["frames"] / ((got["end_ns"] - sent["send_ns"][0]) / 1e9)
    stats["frames"] = sent["frames"]
    stats["cpu_us_per_frame"] = got["cpu_s"] * 1e6 / max(got["frames"], 1)
    return stats


def burst_plan(trades: int, depth_every: int) -> dict[str, Any]:
    return {"kind": "burst", "trades": trades, "depth_every": depth_every}


def paced_plan(rate: float, seconds: float, depth_every: int) -> dict[str, Any]:
    n = int(rate * seconds)
    return {"kind": "timed", "trades": n, "gaps_s": [1 / rate] * n, "depth_interval_s": depth_every / rate}


def one_line(r: int, kind: str, client: str, x: dict[str, Any]) -> str:
    return (
        f"round {r + 1} {kind:5} {client:16} {x['frames_per_s']:>9,.0f}/s "
        f"cpu {x['cpu_us_per_frame']:.2f} µs/frame p50 {x['p50_us']:,.0f} p99 {x['p99_us']:,.0f} µs "
        f"lost {x['lost']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, of {CLIENTS}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst-trades", type=int, default=100_000)
    parser.add_argument("--depth-every", type=int, default=20)
    parser.add_argument("--paced-rate", type=float, default=200.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--python", help="interpreter for the clients (default: a venv created on demand)")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    info = machine()
    python = args.python or str(
        ensure_venv(
            CACHE / "wsvenv",
            [
                "picows",
                f"websockets=={version('websockets')}",
                f"aiohttp=={version('aiohttp')}",
                "orjson",
                "uvloop",
            ],
        )
    )
    versions = subprocess.run(
        [
            python,
            "-c",
            "from importlib.metadata import version as v; "
            "print({p: v(p) for p in ('picows', 'websockets', 'aiohttp', 'uvloop')})",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    console.print(f"clients run by {python}: {versions}")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {"burst": [], "paced": []} for c in clients}
    plans = {
        "burst": burst_plan(args.burst_trades, args.depth_every),
        "paced": paced_plan(args.paced_rate, args.paced_seconds, args.depth_every),
    }
    pool = args.burst_trades + int(args.paced_rate * args.paced_seconds) + 1000
    with tempfile.TemporaryDirectory(prefix="hftfeed-ws-") as tmp:
        fake, port = start_fake(pool, pool // max(args.depth_every, 1) + 1000, Path(tmp) / "fake.log")
        try:
            for r in range(args.rounds):
                order = clients[r % len(clients) :] + clients[: r % len(clients)]
                for kind, plan in plans.items():
                    for client in order:
                        try:
                            result = run_client(fake, port, python, client, plan)
                        except Exception as error:  # one failed run must not lose the others
                            console.print(f"round {r + 1} {kind} {client} FAILED: {error!r}", soft_wrap=True)
                            continue
                        runs[client][kind].append(result)
                        console.print(one_line(r, kind, client, result), soft_wrap=True)
        finally:
            fake.close()

    def med(by: dict[str, list[dict[str, Any]]], kind: str, key: str) -> float:
        return median([x[key] for x in by[kind]]) if by[kind] else float("nan")

    medians = {
        c: {
            "burst_frames_per_s": med(by, "burst", "frames_per_s"),
            "burst_lost": med(by, "burst", "lost"),
            "burst_cpu_us_per_frame": med(by, "burst", "cpu_us_per_frame"),
            "paced_p50_us": med(by, "paced", "p50_us"),
            "paced_p90_us": med(by, "paced", "p90_us"),
            "paced_p99_us": med(by, "paced", "p99_us"),
        }
        for c, by in runs.items()
    }
    show(
        f"WebSocket clients reading the fake Binance (medians of {args.rounds} rounds)",
        ["client", "burst frames/s", "CPU µs/frame", "paced p50 µs", "p90 µs", "p99 µs"],
        [
            [
                c,
                m["burst_frames_per_s"],
                f"{m['burst_cpu_us_per_frame']:.2f}",
                f"{m['paced_p50_us']:.0f}",
                f"{m['paced_p90_us']:.0f}",
                f"{m['paced_p99_us']:.0f}",
            ]
            for c, m in medians.items()
        ],
        width=120,
    )
    save(
        args.json,
        {"machine": info, "args": vars(args), "versions": versions, "runs": runs, "medians": medians},
    )


if __name__ == "__main__":
    main()
