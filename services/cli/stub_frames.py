"""The stub's market as Binance spot would send it: frames for an offline recording.

``hftfeed record --source stub`` runs the stub connector on a simulated clock and turns its events
into what the live Binance connector records: ``<symbol>@trade`` frames, one REST depth snapshot,
then ``<symbol>@depth@100ms`` diffs (each stub book against the previous one: changed levels, and
levels that left the book with quantity 0), in combined-stream envelopes, with Binance's 8-decimal
prices. A replay of such a recording publishes the stub's trades and the stub's books.

Pure: no clock, no file, no socket.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from services.connector_feed.connector import Delivered
from services.connector_feed.events import Depth, Trade, WireLevel
from services.connector_feed.stub import StubbedConnector

#: Venue time -> our receipt: what the recorded ``<recv_ts_ns>`` adds to the venue's event time.
LATENCY_NS = 2_000_000
#: The update ids of the first REST snapshot (any positive id works; Binance's are large).
FIRST_UPDATE_ID = 1_000_000
STEP_S = 0.01

#: One recorded line: (venue symbol, receipt time in ns, the frame's text).
Line = tuple[str, int, str]


def binance_decimal(value: str) -> str:
    """``"50000.01"`` -> ``"50000.01000000"``: Binance spot prints 8 decimals."""
    whole, _, fraction = value.partition(".")
    return f"{whole}.{fraction:0<8}"


def _levels(levels: Sequence[WireLevel]) -> dict[str, str]:
    return {binance_decimal(p): binance_decimal(q) for p, q in levels}


class SpotFrames:
    """One symbol's stub events as Binance spot frames."""

    def __init__(self, symbol: str, first_update_id: int = FIRST_UPDATE_ID) -> None:
        self.symbol = symbol
        self._stream = symbol.lower()
        self._update_id = first_update_id
        self._book: dict[str, dict[str, str]] | None = None  # side -> price -> qty, as sent

    def trade(self, trade: Trade) -> str:
        venue_ms = (trade.ts_recv - LATENCY_NS) // 1_000_000
        data = {
            "e": "trade",
            "E": venue_ms,
            "s": self.symbol,
            "t": trade.trade_id,
            "p": binance_decimal(trade.price),
            "q": binance_decimal(trade.qty),
            "T": venue_ms,
            "m": trade.is_buyer_maker,
            "M": True,
        }
        return orjson.dumps({"stream": f"{self._stream}@trade", "data": data}).decode()

    def depth(self, depth: Depth) -> str | None:
        """The first book as a REST snapshot body, then a diff per book (None: nothing changed)."""
        book = {"b": _levels(depth.bids), "a": _levels(depth.asks)}
        previous, self._book = self._book, book
        if previous is None:
            body = {
                "lastUpdateId": self._update_id,
                "bids": [[p, q] for p, q in book["b"].items()],
                "asks": [[p, q] for p, q in book["a"].items()],
            }
            return orjson.dumps(body).decode()
        changes = {side: _changes(previous[side], book[side]) for side in ("b", "a")}
        count = len(changes["b"]) + len(changes["a"])
        if count == 0:
            return None
        first, self._update_id = self._update_id + 1, self._update_id + count
        data = {
            "e": "depthUpdate",
            "E": (depth.ts_recv - LATENCY_NS) // 1_000_000,
            "s": self.symbol,
            "U": first,
            "u": self._update_id,
            "b": changes["b"],
            "a": changes["a"],
        }
        return orjson.dumps({"stream": f"{self._stream}@depth@100ms", "data": data}).decode()


def _changes(before: dict[str, str], after: dict[str, str]) -> list[list[str]]:
    """Levels whose quantity changed or that are new, then levels that left (quantity 0)."""
    changed = [[p, q] for p, q in after.items() if before.get(p) != q]
    gone = [[p, "0.00000000"] for p in before if p not in after]
    return changed + gone


def stub_events(stub: StubbedConnector, start_ns: int, seconds: float) -> Iterator[tuple[int, Delivered]]:
    """``seconds`` of the stub's market from ``start_ns`` on a simulated clock: (time, event) in order."""
    for step in range(1, round(seconds / STEP_S) + 1):
        elapsed = step * STEP_S
        now_ns = start_ns + round(elapsed * 1e9)
        while batch := stub.due(elapsed, now_ns):
            for event in batch:
                yield now_ns, event


def stub_lines(stub: StubbedConnector, start_ns: int, seconds: float) -> Iterator[Line]:
    """The same market as recorded lines (receipt order): trade frames, a snapshot, depth diffs."""
    frames = {symbol: SpotFrames(symbol) for symbol in stub.instruments()}
    for now_ns, event in stub_events(stub, start_ns, seconds):
        if isinstance(event, Trade):
            yield event.symbol, now_ns, frames[event.symbol].trade(event)
        elif isinstance(event, Depth):
            text = frames[event.symbol].depth(event)
            if text is not None:
                yield event.symbol, now_ns, text
