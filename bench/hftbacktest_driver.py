"""Drive hftbacktest 2.4.4 for the proofs; runs with the interpreter of a separate virtualenv.

Standalone on purpose (only numpy and hftbacktest are imported): the project's tests call it with
``<venv>/bin/python bench/hftbacktest_driver.py COMMAND ...`` and compare its JSON with our side.

    constants                       -> event_dtype and flag values of the installed hftbacktest
    convert IN.gz OUT.npz           -> hftbacktest.data.utils.binancefutures.convert(IN, OUT)
    replay OUT.json TICK LOT FILE.. [--snapshot S.npz]
        -> a backtest (ConstantLatency(0, 0), last_trades_capacity > 0) stepped with
           wait_next_feed: after every wake-up, the local book (depth.snapshot(), every level as
           [tick, qty]), the best bid/ask ticks and quantities, and the trades seen since.
    snapshot OUT.npz TICK LOT FILE.. [--snapshot S.npz] -> create_last_snapshot(...)
"""

from __future__ import annotations

import json
import sys
from typing import Any

import hftbacktest
import numpy as np
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.data.utils import binancefutures
from hftbacktest.data.utils.snapshot import create_last_snapshot
from hftbacktest.data.validation import validate_event_order

UNTIL_END_NS = 10**17


def constants() -> dict[str, Any]:
    from hftbacktest import types

    names: tuple[str, ...] = (
        "DEPTH_EVENT",
        "TRADE_EVENT",
        "DEPTH_CLEAR_EVENT",
        "DEPTH_SNAPSHOT_EVENT",
        "DEPTH_BBO_EVENT",
    )
    names += ("EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT")
    return {
        "version": getattr(hftbacktest, "__version__", None),
        "dtype": [
            [name, str(types.event_dtype.fields[name][0]), types.event_dtype.fields[name][1]]
            for name in types.event_dtype.names
        ],
        "itemsize": types.event_dtype.itemsize,
        "flags": {name: int(getattr(types, name)) for name in names},
    }


def _asset(tick: float, lot: float, files: list[str], snapshot: str | None) -> Any:
    for path in files:
        with np.load(path) as archive:
            validate_event_order(archive["data"])
    asset = (
        BacktestAsset()
        .data(files)
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick)
        .lot_size(lot)
        .last_trades_capacity(1_000_000)
    )
    if snapshot is not None:
        asset.initial_snapshot(snapshot)
    return asset


def replay(tick: float, lot: float, files: list[str], snapshot: str | None) -> list[dict[str, Any]]:
    hbt = HashMapMarketDepthBacktest([_asset(tick, lot, files, snapshot)])
    depth = None
    states = []
    while True:
        rc = hbt.wait_next_feed(False, UNTIL_END_NS)
        if depth is None:
            depth = hbt.depth(0)
        rows = depth.snapshot()
        book = rows.copy()
        depth.snapshot_free(rows)
        trades = hbt.last_trades(0).copy()
        hbt.clear_last_trades(0)
        bids = book[(book["ev"] & (1 << 29)) != 0]
        asks = book[(book["ev"] & (1 << 28)) != 0]
        states.append(
            {
                "rc": int(rc),
                "ts": int(hbt.current_timestamp),
                "bids": [
                    [round(p / tick), float(q)]
                    for p, q in zip(bids["px"].tolist(), bids["qty"].tolist(), strict=False)
                ],
                "asks": [
                    [round(p / tick), float(q)]
                    for p, q in zip(asks["px"].tolist(), asks["qty"].tolist(), strict=False)
                ],
                "best_bid_tick": int(depth.best_bid_tick),
                "best_ask_tick": int(depth.best_ask_tick),
                "best_bid": float(depth.best_bid),
                "best_ask": float(depth.best_ask),
                "best_bid_qty": float(depth.best_bid_qty),
                "best_ask_qty": float(depth.best_ask_qty),
                "trades": [
                    [
                        int(r["ev"]),
                        int(r["exch_ts"]),
                        int(r["local_ts"]),
                        float(r["px"]),
                        float(r["qty"]),
                        int(r["ival"]),
                    ]
                    for r in trades
                ],
            }
        )
        if rc != 2:
            break
    hbt.close()
    return states


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    snapshot = None
    if "--snapshot" in args:
        i = args.index("--snapshot")
        snapshot = args[i + 1]
        args = args[:i] + args[i + 2 :]
    if command == "constants":
        print(json.dumps(constants()))
    elif command == "convert":
        rows = binancefutures.convert(args[0], output_filename=args[1], buffer_size=1_000_000)
        print(json.dumps({"rows": len(rows)}))
    elif command == "replay":
        out, tick, lot, files = args[0], float(args[1]), float(args[2]), args[3:]
        states = replay(tick, lot, files, snapshot)
        with open(out, "w") as handle:
            json.dump(states, handle)
        print(json.dumps({"states": len(states)}))
    elif command == "snapshot":
        out, tick, lot, files = args[0], float(args[1]), float(args[2]), args[3:]
        rows = create_last_snapshot(files, tick, lot, initial_snapshot=snapshot, output_snapshot_filename=out)
        print(json.dumps({"rows": len(rows)}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
