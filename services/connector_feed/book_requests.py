"""The feed's books on request (``md.<SYMBOL>.book``) and as periodic snapshots.

A request (body empty, or ``{"depth": N}`` for at most N levels a side) is answered with the
feed's current book of that symbol: a ``DepthUpdate`` with ``is_snapshot: true`` whose ``seq`` is
that of the last depth message already reflected in it, and the current ``feed_run``; applying
the deltas with a greater ``seq`` on top gives the feed's book exactly. An unknown symbol (404), a
book being resynced (503) or a bad request body (400) gets a NATS micro error reply
(``Nats-Service-Error`` / ``Nats-Service-Error-Code`` headers) with the reason.

The book is copied at once (one instant, one seq) and sorted in steps that let the event loop run,
so a 5,000-level reply never stalls publishing (``docs/benchmarks.md``).

With MD_SNAPSHOT_INTERVAL_S > 0, every synced book is also published as a snapshot on
``md.<SYMBOL>.depth`` at that interval (symbols spread over it), next in the depth stream's seq.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import orjson
from nats.micro.request import Request

from schemas import rules, subjects
from services.common.logging import get_logger
from services.connector_feed.events import Depth, WireLevel
from services.connector_feed.stream import HFTConnectorStream

log = get_logger("connector_feed")

MAX_DEPTH = 100_000
#: Attempts at a periodic snapshot built while the book did not move, before building it at once.
SNAPSHOT_ATTEMPTS = 3


class BookRequests:
    def __init__(self, stream: HFTConnectorStream) -> None:
        self.stream = stream
        self.requests = 0
        self.errors: dict[str, int] = {}  # by code
        self.snapshots_published = 0

    async def on_request(self, request: Request) -> None:
        self.requests += 1
        symbol = subjects.symbol_of(request.subject)
        depth, problem = _depth(request.data)
        if problem is not None:
            await self._error(request, "400", problem)
            return
        stream = self.stream
        if symbol not in stream.instruments:
            known = sorted(stream.instruments)
            await self._error(
                request, "404", f"unknown symbol {rules.preview(symbol)}: this feed publishes {known}"
            )
            return
        held = stream.book_copy(symbol)
        if held is None:
            await self._error(
                request, "503", f"the book of {symbol} is being rebuilt (resyncing): ask again shortly"
            )
            return
        copy, seq = held
        bids, asks = await copy.sorted(depth)  # yields after its last step: encoding is one of its own
        reply = self._snapshot(symbol, bids, asks, copy.last_update_id, seq)
        await request.respond(reply.wire(), headers={"Content-Type": "application/json"})

    def _snapshot(
        self,
        symbol: str,
        bids: list[WireLevel],
        asks: list[WireLevel],
        last: int | None,
        seq: int | None,
    ) -> Depth:
        now = time.time_ns()
        stream = self.stream
        assert last is not None
        return Depth.whole_book(
            stream.connector.exchange, symbol, bids, asks, last, now, now, seq, stream.feed_run
        )

    async def _error(self, request: Request, code: str, message: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        body = orjson.dumps({"error": message, "code": int(code)})
        await request.respond_error(code, message, data=body)

    # ---- periodic snapshots ------------------------------------------------------------------

    async def publish_periodically(self, interval_s: float) -> None:
        """Every synced book as a snapshot on md.<SYMBOL>.depth, each symbol once per interval."""
        symbols = sorted(self.stream.instruments)
        step = interval_s / max(len(symbols), 1)
        while True:
            for symbol in symbols:
                await asyncio.sleep(step)
                await self.publish_snapshot(symbol)

    async def publish_snapshot(self, symbol: str) -> bool:
        """Publish ``symbol``'s book as a snapshot (False: it has none now). Sorted off the hot path;
        should the book move meanwhile, built again (and at last at once, in one step)."""
        stream = self.stream
        for _ in range(SNAPSHOT_ATTEMPTS):
            held = stream.book_copy(symbol)
            if held is None:
                return False
            copy, seq = held
            bids, asks = await copy.sorted()
            if stream.depth_seq(symbol) == seq:  # nothing moved while it was sorted
                break
        else:
            held = stream.book_copy(symbol)
            if held is None:
                return False
            copy, _ = held
            bids, asks = sorted_now(copy.bids, True), sorted_now(copy.asks, False)
        stream.publish_snapshot(self._snapshot(symbol, bids, asks, copy.last_update_id, None))
        self.snapshots_published += 1
        return True

    def health(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "snapshots_published": self.snapshots_published,
        }


def sorted_now(levels: list[WireLevel], descending: bool) -> list[WireLevel]:
    return sorted(levels, key=lambda level: Decimal(level[0]), reverse=descending)


def _depth(body: bytes) -> tuple[int | None, str | None]:
    """The request body: empty, or ``{"depth": N}`` with 1 <= N; (depth, None) or (None, why not)."""
    if not body.strip():
        return None, None
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, f'the request body must be empty or JSON like {{"depth": 10}}, got {rules.preview(body)}'
    if not isinstance(request, dict):
        return (
            None,
            f'the request body must be a JSON object like {{"depth": 10}}, got {rules.preview(request)}',
        )
    depth = request.get("depth")
    if depth is None:
        return None, None
    if type(depth) is not int or not 1 <= depth <= MAX_DEPTH:
        return None, f"depth must be an integer from 1 to {MAX_DEPTH}, got {rules.preview(depth)}"
    return depth, None
