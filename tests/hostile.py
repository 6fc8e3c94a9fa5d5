"""Hostile input, written once and used by the in-process and the process-level tests.

Each item names the reason it must be counted under, so a test can check that every rejection was
counted where an operator looks (health's ``malformed`` / ``rejected``), by reason.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fake_binance import combined, dumps, spot_depth_diff, spot_trade

TS = 1_770_000_000_000
DEEP = "[" * 990 + "]" * 990


def _trade(symbol: object, **fields: Any) -> dict[str, Any]:
    payload = spot_trade("X", 1, "1.00", "1.00", False, TS)
    payload.update(s=symbol, **fields)
    return payload


def _wrapped(stream: str, payload: dict[str, Any]) -> str:
    # json, not orjson: it writes ints beyond 64 bits. The nesting is spliced in as text (neither
    # library would write it).
    return json.dumps(combined(stream, payload)).replace('"__DEEP__"', DEEP)


def hostile_frames(symbol: str) -> list[tuple[str, str | bytes]]:
    """(reason the connector counts, frame) for a spot feed subscribed to ``symbol`` only."""
    trades = f"{symbol.lower()}@trade"
    depth = f"{symbol.lower()}@depth@100ms"
    diff = spot_depth_diff(symbol, 1, 2, [["1.0", "1.0"]], [], TS)
    return [
        ("unknown_symbol", _wrapped(trades, _trade("BTC.USDT"))),  # not a subject token
        ("unknown_symbol", _wrapped(trades, _trade("ETHUSDT"))),  # a real symbol we did not subscribe
        ("unknown_symbol", _wrapped(depth, {**diff, "s": "BTC.USDT"})),
        ("unknown_symbol", _wrapped(depth, {**diff, "s": "SOLUSDT"})),
        ("bad_symbol", _wrapped(trades, _trade(["x"]))),
        ("bad_symbol", _wrapped(trades, _trade({"a": 1}))),
        ("out_of_range", _wrapped(trades, _trade(symbol, T=18_500_000_000_000))),  # > int64 ns
        ("out_of_range", _wrapped(trades, _trade(symbol, T=-1))),
        ("out_of_range", _wrapped(trades, _trade(symbol, t=-1))),
        ("wrong_type", _wrapped(trades, _trade(symbol, t=2**64))),  # beyond uint64 (a float to JSON)
        ("wrong_type", _wrapped(trades, _trade(symbol, m="yes"))),
        ("bad_price", _wrapped(trades, _trade(symbol, p="9" * 10_000))),
        ("bad_price", _wrapped(trades, _trade(symbol, p="1e400"))),
        ("bad_price", _wrapped(trades, _trade(symbol, p="NaN"))),
        ("bad_price", _wrapped(trades, _trade(symbol, p=5))),
        ("bad_qty", _wrapped(trades, _trade(symbol, q="-1"))),
        ("bad_price", _wrapped(trades, _trade(symbol, p="__DEEP__"))),
        ("bad_levels", _wrapped(depth, {**diff, "b": "__DEEP__"})),
        ("bad_levels", _wrapped(depth, {**diff, "a": [["1e99999999", "1"]]})),
        ("bad_update_ids", _wrapped(depth, {**diff, "U": 5, "u": 4})),
        ("bad_time", _wrapped(depth, {**diff, "E": -5})),
        ("missing_field", _wrapped(trades, {k: v for k, v in _trade(symbol).items() if k != "p"})),
        ("unknown_event", _wrapped(trades, {"e": "bogus", "s": symbol})),
        ("bad_envelope", json.dumps({"stream": trades, "data": 5})),
        ("not_an_object", "[1, 2, 3]"),
        ("not_an_object", '"just a string"'),
        ("not_json", "{not json"),
        ("not_json", ""),
        ("binary_frame", dumps(combined(trades, _trade(symbol))).encode()),
        ("oversized", '{"pad":"' + "x" * (1 << 21) + '"}'),
    ]


def hostile_messages(symbol: str, valid_trade: bytes, valid_depth: bytes) -> list[tuple[str, str, bytes]]:
    """(kind, reason a consumer counts, payload) published on ``md.<symbol>.<kind>``."""
    trade = json.loads(valid_trade)
    depth = json.loads(valid_depth)

    def t(**fields: Any) -> bytes:
        return json.dumps({**trade, **fields}).encode()

    def d(**fields: Any) -> bytes:
        return json.dumps({**depth, **fields}).encode()

    return [
        ("trade", "not_json", b"\x00\xff\xfe garbage"),
        ("trade", "not_json", b"x" * (1 << 20)),  # 1 MB: must not reach the log
        ("trade", "wrong_type", b"[]"),
        ("trade", "missing_field", b"{}"),
        ("trade", "wrong_schema_version", t(schema_version=2)),
        ("trade", "symbol_mismatch", t(symbol="ETHUSDT")),
        ("trade", "invalid_price", t(price="1e400")),
        ("trade", "too_long_price", t(price="9" * 10_000)),
        ("trade", "non_positive_qty", t(qty="0")),
        ("trade", "invalid_id", t(trade_id=2**64)),
        ("trade", "invalid_timestamp", t(ts_event=-1)),
        ("trade", "future_timestamp", t(ts_event=4_000_000_000_000_000_000)),
        ("trade", "side_contradiction", t(side="buy", is_buyer_maker=True)),
        ("trade", "wrong_type", t(price=50000.5)),
        ("depth", "invalid_levels", d(bids=[["1e99999999", "1"]])),
        ("depth", "invalid_levels", d(asks=[["1", "-1"]])),
        ("depth", "wrong_schema_version", d(schema_version="1")),
        ("depth", "symbol_mismatch", d(symbol="BTC-X")),
        ("depth", "invalid_update_ids", d(first_update_id=10**6, last_update_id=5)),
        ("depth", "not_json", b"\xff"),
    ]
