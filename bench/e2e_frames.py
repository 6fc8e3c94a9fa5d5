"""Pre-encoded Binance spot frames for the end-to-end bench's fake venue (``bench/e2e_fake.py``).

Pure: no I/O. Formats follow Binance's documentation (shared reference ``binance.md`` §3.2-3.5):
combined-stream envelopes, decimal strings with 8 decimals, integer ids and millisecond times.

* Trades come in one pool with contiguous ids, in both forms a subscriber may ask for: raw
  ``btcusdt@trade`` (id ``t``) and ``btcusdt@aggTrade`` (``a`` = ``f`` = ``l`` = the same id), so a
  contender on either stream receives the same trades, with the same ids to join on.
* Depth diffs (``btcusdt@depth@100ms``) chain ``U = previous u + 1`` over a 1000-level book, 10-20
  levels each (25 % deletions), bids always below and asks at or above the mid (never crossed).
  ``DepthPool.snapshot(cursor)`` is the REST snapshot a client gets while the next diff to send is
  ``cursor``: the book after the diffs before it, with ``lastUpdateId = U`` of diff ``cursor``;
  every diff spans at least two ids, so that diff straddles the snapshot (``U <= lastUpdateId + 1
  <= u``) under both Binance's spot procedure and cryptofeed's.

Every frame is stored as a whole unmasked WebSocket text frame, ready to write to a socket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import orjson

SYMBOL = "BTCUSDT"
TRADE_STREAM = "btcusdt@trade"
AGG_TRADE_STREAM = "btcusdt@aggTrade"
DEPTH_STREAM = "btcusdt@depth@100ms"
FIRST_TRADE_ID = 1_000_000
FIRST_UPDATE_ID = 9_000_000_000
MID_TICKS = 6_500_000  # 65000.00 in ticks of 0.01
BOOK_LEVELS = 1000
#: A short frame the clients of ``bench/ws_clients.py`` stop on (no real frame is this short).
END_MARKER = b'{"stream":"bench@end","data":{}}'
END_MARKER_MAX_LEN = 48


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client WebSocket text frame (FIN set, opcode 1)."""
    return ws_frame(0x1, payload)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return header + payload


def ws_payload(frame: bytes) -> bytes:
    """The payload of an unmasked frame built by ``ws_frame``."""
    size = frame[1] & 0x7F
    return frame[2:] if size < 126 else frame[4:] if size == 126 else frame[10:]


def price_str(ticks: int) -> str:
    """Ticks of 0.01 as Binance writes prices: 8 decimals."""
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def qty_str(units: int) -> str:
    """Units of 1e-8 as an 8-decimal string."""
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


@dataclass(frozen=True)
class TradePool:
    """The same trades as ``@trade`` and ``@aggTrade`` WebSocket frames; id = FIRST_TRADE_ID + index."""

    trade: list[bytes]
    agg: list[bytes]

    def __len__(self) -> int:
        return len(self.trade)


def trade_pool(n: int, seed: int, t0_ms: int) -> TradePool:
    rng = random.Random(seed)
    price = MID_TICKS
    trade_frames: list[bytes] = []
    agg_frames: list[bytes] = []
    for i in range(n):
        price += rng.randint(-3, 3)
        trade_id = FIRST_TRADE_ID + i
        t_ms = t0_ms + i
        p, q, maker = price_str(price), qty_str(rng.randint(1, 250_000_000)), rng.random() < 0.5
        raw = {"e": "trade", "E": t_ms, "s": SYMBOL, "t": trade_id, "p": p, "q": q, "T": t_ms}
        agg = {"e": "aggTrade", "E": t_ms, "s": SYMBOL, "a": trade_id, "p": p, "q": q}
        agg |= {"f": trade_id, "l": trade_id, "T": t_ms}
        raw |= {"m": maker, "M": True}
        agg |= {"m": maker, "M": True}
        trade_frames.append(ws_text_frame(orjson.dumps({"stream": TRADE_STREAM, "data": raw})))
        agg_frames.append(ws_text_frame(orjson.dumps({"stream": AGG_TRADE_STREAM, "data": agg})))
    return TradePool(trade_frames, agg_frames)


@dataclass(frozen=True)
class Diff:
    first_update_id: int
    last_update_id: int
    bids: list[tuple[int, int]]  # (price ticks, qty units); qty 0 removes the level
    asks: list[tuple[int, int]]


@dataclass
class DepthPool:
    """A book and a chain of diffs over it, pre-encoded; snapshots computed on demand."""

    bids: dict[int, int]
    asks: dict[int, int]
    diffs: list[Diff]
    frames: list[bytes]
    _cursor: int = 0
    _book: tuple[dict[int, int], dict[int, int]] | None = field(default=None, repr=False)

    def book_at(self, cursor: int) -> tuple[dict[int, int], dict[int, int]]:
        """The book after ``diffs[:cursor]`` (advanced incrementally from the last call)."""
        if not 0 <= cursor < len(self.diffs):
            raise IndexError(f"depth cursor {cursor} outside the pool of {len(self.diffs)} diffs")
        if self._book is None or cursor < self._cursor:
            self._book, self._cursor = (dict(self.bids), dict(self.asks)), 0
        bids, asks = self._book
        for diff in self.diffs[self._cursor : cursor]:
            for side, levels in ((bids, diff.bids), (asks, diff.asks)):
                for price, qty in levels:
                    if qty:
                        side[price] = qty
                    else:
                        side.pop(price, None)
        self._cursor = cursor
        return bids, asks

    def snapshot(self, cursor: int, limit: int) -> bytes:
        """The ``GET /api/v3/depth`` body while ``diffs[cursor]`` is the next diff to be sent."""
        bids, asks = self.book_at(cursor)
        top_bids = sorted(bids, reverse=True)[:limit]
        top_asks = sorted(asks)[:limit]
        return orjson.dumps(
            {
                "lastUpdateId": self.diffs[cursor].first_update_id,
                "bids": [[price_str(p), qty_str(bids[p])] for p in top_bids],
                "asks": [[price_str(p), qty_str(asks[p])] for p in top_asks],
            }
        )


def depth_pool(n: int, seed: int, t0_ms: int, min_levels: int = 10, max_levels: int = 20) -> DepthPool:
    rng = random.Random(seed)
    bids = {MID_TICKS - 1 - i: rng.randint(1, 500_000_000) for i in range(BOOK_LEVELS)}
    asks = {MID_TICKS + i: rng.randint(1, 500_000_000) for i in range(BOOK_LEVELS)}
    live_bids, live_asks = dict(bids), dict(asks)

    def side(book: dict[int, int], count: int, is_bid: bool) -> list[tuple[int, int]]:
        out: dict[int, int] = {}
        while len(out) < count:
            offset = rng.randrange(BOOK_LEVELS) if rng.random() < 0.05 else int(rng.expovariate(1 / 25))
            price = MID_TICKS - 1 - offset if is_bid else MID_TICKS + offset
            if price in out:
                continue
            if price in book and rng.random() < 0.25:
                out[price] = 0
                del book[price]
            else:
                out[price] = book[price] = rng.randint(1, 500_000_000)
        return list(out.items())

    diffs, frames, last = [], [], FIRST_UPDATE_ID
    for i in range(n):
        first, last = last + 1, last + 1 + rng.randint(1, 39)
        levels = rng.randint(min_levels, max_levels)
        n_bids = rng.randint(levels // 3, levels - levels // 3)
        diff = Diff(first, last, side(live_bids, n_bids, True), side(live_asks, levels - n_bids, False))
        diffs.append(diff)
        data = {
            "e": "depthUpdate",
            "E": t0_ms + 100 * i,
            "s": SYMBOL,
            "U": first,
            "u": last,
            "b": [[price_str(p), qty_str(q)] for p, q in diff.bids],
            "a": [[price_str(p), qty_str(q)] for p, q in diff.asks],
        }
        frames.append(ws_text_frame(orjson.dumps({"stream": DEPTH_STREAM, "data": data})))
    return DepthPool(bids, asks, diffs, frames)


def exchange_info() -> bytes:
    """``GET /api/v3/exchangeInfo`` for the one symbol (what cryptofeed reads at start-up)."""
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": 0,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [
                {
                    "symbol": SYMBOL,
                    "status": "TRADING",
                    "baseAsset": "BTC",
                    "baseAssetPrecision": 8,
                    "quoteAsset": "USDT",
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01000000",
                            "maxPrice": "1000000.00000000",
                            "tickSize": "0.01000000",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "9000.00000000",
                            "stepSize": "0.00001000",
                        },
                    ],
                }
            ],
        }
    )
