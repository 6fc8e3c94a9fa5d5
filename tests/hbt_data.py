"""A Binance USD-M recording in hftbacktest's collector layout, from documented frames.

``<recv_ts_ns> <raw text>`` lines, gzip (``hftbacktest/collector``): combined-stream
``depthUpdate`` (``book_scenario``'s diffs) and ``trade`` frames (``X`` = MARKET, plus one
LIQUIDATION the converter must skip), ``bookTicker`` frames (ignored without ``opt='t'``), REST
depth snapshots as bare JSON lines (one at the start, as the collector writes after the first gap,
and a shallower one later: hftbacktest then clears only up to its deepest price, so deeper levels
survive). Receipt times jitter: some frames arrive before the exchange stamped them (the converter
shifts every ``local_ts``) and some out of exchange order (rows split into EXCH/LOCAL copies). One
diff crosses the book (a missed update, as in real data) and one pair of diffs shares both stamps.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import orjson

from tests.fake_binance import book_scenario, combined

SYMBOL = "BTCUSDT"
TICK, LOT = "0.01", "0.00000001"


def futures_trade(
    trade_id: int, price: str, qty: str, buyer_is_maker: bool, ts_ms: int, kind: str
) -> dict[str, Any]:
    """USD-M ``<symbol>@trade`` payload (``e,E,T,s,t,p,q,X,m``)."""
    return {
        "e": "trade",
        "E": ts_ms + 1,
        "T": ts_ms,
        "s": SYMBOL,
        "t": trade_id,
        "p": price,
        "q": qty,
        "X": kind,
        "m": buyer_is_maker,
    }


def rest_snapshot(last_id: int, bids: list[list[str]], asks: list[list[str]], ts_ms: int) -> dict[str, Any]:
    return {"lastUpdateId": last_id, "E": ts_ms + 2, "T": ts_ms, "bids": bids, "asks": asks}


def collector_recording(path: Path, n_diffs: int = 240, seed: int = 7, levels: int = 150) -> Path:
    """Write the recording (``<path>/btcusdt_<day>.gz``) and return its path."""
    snapshot, diffs, _ = book_scenario(SYMBOL, "usdm", n_diffs, seed=seed, levels=levels)
    rng = random.Random(seed)
    lines: list[tuple[int, bytes]] = []

    def add(exch_ms: int, text: bytes, latency_ms: float) -> int:
        lines.append((int((exch_ms + latency_ms) * 1_000_000) + rng.randrange(1000), text))
        return lines[-1][0]

    stream = "btcusdt@depth@0ms"
    trade_id = 5_000_000
    last_recv = 0
    for i, diff in enumerate(diffs):
        latency = rng.choice((3.0, 4.5, 6.0, 40.0)) if i % 17 else -2.0  # now and then "before" it happened
        last_recv = add(diff["T"], orjson.dumps(combined(stream, diff)), latency)
        if i == 2:  # the collector's first REST snapshot, after the first gap
            body = rest_snapshot(snapshot.last_update_id, snapshot.bids, snapshot.asks, diff["T"])
            add(diff["T"], orjson.dumps(body), 25.0)
        if i == n_diffs // 2:  # a resync with a shallower snapshot: deeper levels survive in hftbacktest
            bids = [lvl for lvl in diff["b"] if float(lvl[1]) > 0][:1] or [["49000.00000000", "1.00000000"]]
            body = rest_snapshot(diff["u"], [*bids, ["48990.00000000", "0.50000000"]], [], diff["T"])
            add(diff["T"], orjson.dumps(body), 30.0)
        if i == n_diffs // 3:  # a crossing bid (a missed update), removed by the next diff's row below
            best_ask = min(float(a[0]) for a in diff["a"]) if diff["a"] else 51000.0
            cross = dict(diff, b=[[f"{best_ask + 0.05:.8f}", "0.25000000"]], a=[])
            add(diff["T"], orjson.dumps(combined(stream, cross)), 7.0)
            undo = dict(diff, b=[[f"{best_ask + 0.05:.8f}", "0.00000000"]], a=[])
            add(diff["T"] + 1, orjson.dumps(combined(stream, undo)), 8.0)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            trade_id += 1
            price = f"{rng.choice(diff['b'] or diff['a'])[0]}"
            qty = f"0.{rng.randrange(1, 99_999_999):08d}"
            kind = "MARKET" if trade_id % 29 else "LIQUIDATION"
            payload = futures_trade(
                trade_id, price, qty, rng.random() < 0.5, diff["T"] + rng.randrange(3), kind
            )
            add(payload["T"], orjson.dumps(combined("btcusdt@trade", payload)), rng.choice((1.0, 2.0, 90.0)))
        ticker = {
            "e": "bookTicker",
            "u": diff["u"],
            "s": SYMBOL,
            "b": "1",
            "B": "1",
            "a": "2",
            "A": "1",
            "T": diff["T"],
            "E": diff["E"],
        }
        add(diff["T"], orjson.dumps(combined("btcusdt@bookTicker", ticker)), 2.0)
    twin = dict(diffs[-1], b=diffs[-1]["b"][:1], a=[])  # same T, same receipt time: one batch
    lines.append((last_recv, orjson.dumps(combined(stream, twin))))
    lines.sort(key=lambda line: line[0])
    out = path / "btcusdt_20260202.gz"
    with gzip.open(out, "wb") as handle:
        for recv_ns, text in lines:
            handle.write(b"%d %s\n" % (recv_ns, text))
    return out
