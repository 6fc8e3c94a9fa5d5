"""A subscriber's book of one instrument, kept the way a venue's local-book procedure keeps one.

1. On start, on a ``seq`` gap, on a new ``feed_run`` - or when the subscriber may have lost
   messages (a NATS slow-consumer drop, a reconnect) - it is ``resyncing``: it asks the feed for
   the book (``md.<SYMBOL>.book``) and buffers the depth messages meanwhile.
2. The reply is the feed's book with the ``seq`` of the last depth message reflected in it; the
   buffered messages after that ``seq`` are applied on top, in order; it is ``synced``.
3. While synced, every message must be the next ``seq`` of the same ``feed_run``; a snapshot in
   the stream resets the book. Anything else is a gap: back to 1.

It is synced or resyncing, never silently wrong. Requests that fail (no feed, a book the feed is
rebuilding itself) are retried with a capped backoff. Messages without ``seq`` (a producer of an
older contract) are chained by the venue's update ids instead, and wait for a snapshot after a gap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from schemas import rules, subjects
from schemas.rules import RuleViolation
from schemas.wire import DepthMsg, decode_depth
from services.common.book import OrderBook
from services.common.logging import LogSampler, get_logger

log = get_logger(__name__)

State = Literal["resyncing", "synced"]
#: Depth messages buffered while the book is requested; past it the buffer starts over.
MAX_BUFFER = 10_000
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 5.0
REQUEST_TIMEOUT_S = 2.0

#: (subject, body) -> the reply's headers and data; raises on no reply.
Requester = Callable[[str, bytes], Awaitable[tuple[dict[str, str], bytes]]]


@dataclass
class KeeperStats:
    gaps: int = 0  # seq gaps, new runs and lost messages detected
    recoveries: int = 0  # times the book became synced again
    requests: int = 0
    failed_requests: int = 0
    buffer_overflows: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why it resynced, by kind


class BookKeeper:
    def __init__(self, symbol: str, request: Requester, clock: Callable[[], float] = time.monotonic) -> None:
        self.symbol = symbol
        self.book = OrderBook()
        self.state: State = "resyncing"
        self.feed_run: str | None = None
        self.seq: int | None = None  # the seq of the last message applied
        self.stats = KeeperStats()
        self._request = request
        self._clock = clock
        self._buffer: deque[DepthMsg] = deque()
        self._recovering: asyncio.Task[None] | None = None
        self._losses = 0  # losses so far: a reply asked for before the last one may predate it
        self._sampler = LogSampler()
        self.reason = "starting: asking the feed for the book"

    @property
    def synced(self) -> bool:
        return self.state == "synced"

    # ---- the stream --------------------------------------------------------------------------

    def on_depth(self, update: DepthMsg) -> None:
        """A depth message of this symbol, in the order NATS delivered it."""
        if self.state == "resyncing":
            if update.is_snapshot:  # a snapshot in the stream: as good as a reply
                self._buffer.clear()
                self._sync(update)
                return
            if len(self._buffer) >= MAX_BUFFER:
                self._buffer.clear()
                self.stats.buffer_overflows += 1
            self._buffer.append(update)
            self.recover("resyncing")
            return
        if update.seq is None:
            self._apply_unsequenced(update)
            return
        if update.feed_run != self.feed_run:
            self.lost(
                "new_feed_run", f"a new feed run {rules.preview(update.feed_run)}: the feed restarted", update
            )
        elif update.seq != (self.seq or 0) + 1:
            if update.seq <= (self.seq or 0):
                return  # a duplicate (old news)
            self.lost(
                "seq_gap",
                f"seq {update.seq} after {self.seq}: {update.seq - (self.seq or 0) - 1} lost",
                update,
            )
        else:
            self._apply(update)

    def lost(self, kind: str, why: str, update: DepthMsg | None = None) -> None:
        """Messages may have been lost (a gap, a new run, a dropped or reconnected subscription)."""
        self.stats.gaps += 1
        self.stats.reasons[kind] = self.stats.reasons.get(kind, 0) + 1
        self._losses += 1
        self.state = "resyncing"
        self.reason = why
        self._buffer.clear()
        if update is not None:
            if update.is_snapshot:
                self._sync(update)
                return
            self._buffer.append(update)
        if self._sampler.allow(kind) is not None:
            log.warning("book_resync", symbol=self.symbol, reason=why, gaps=self.stats.gaps)
        self.recover(kind)

    def _apply(self, update: DepthMsg) -> None:
        if update.is_snapshot:
            self.book.reset(update.bids, update.asks, update.last_update_id)
        else:
            self.book.apply(update.bids, update.asks, update.last_update_id)
        self.seq = update.seq

    def _apply_unsequenced(self, update: DepthMsg) -> None:
        """An older producer (no seq): the venue's update-id chain is all there is."""
        if update.is_snapshot:
            self.book.reset(update.bids, update.asks, update.last_update_id)
            return
        last = self.book.last_update_id or 0
        if update.last_update_id <= last:
            return
        chained = (
            update.prev_last_update_id == last
            if update.prev_last_update_id is not None
            else (update.first_update_id or update.last_update_id) <= last + 1
        )
        if not chained:
            self.lost("update_id_gap", f"update {update.first_update_id} after {last}")
            return
        self.book.apply(update.bids, update.asks, update.last_update_id)

    # ---- recovery ----------------------------------------------------------------------------

    def recover(self, why: str) -> None:
        """Ask the feed for the book (once at a time; the running request serves every trigger)."""
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(
                self._recover(), name=f"book-{self.symbol}"
            )

    async def _recover(self) -> None:
        delay = RETRY_INITIAL_S
        while self.state == "resyncing":
            losses = self._losses
            reply = await self._ask()
            if self.state != "resyncing":  # a snapshot in the stream got there first
                return
            if self._losses != losses:
                # Lost while the request was out (a slow-consumer drop, a reconnect): the reply may
                # predate what was lost, and if the stream is quiet now nothing would show the hole.
                continue
            if reply is not None and self._sync(reply):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _ask(self) -> DepthMsg | None:
        self.stats.requests += 1
        try:
            headers, data = await self._request(subjects.book(self.symbol), b"")
            if "Nats-Service-Error-Code" in headers:
                raise RuleViolation(
                    "error_reply",
                    f"{headers.get('Nats-Service-Error-Code')} {headers.get('Nats-Service-Error', '')}",
                )
            reply = decode_depth(data)
            if not reply.is_snapshot or reply.symbol != self.symbol or reply.seq is None:
                raise RuleViolation("bad_reply", "not a sequenced snapshot of this symbol")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # no feed yet, a feed rebuilding its book, a reply of any shape
            self.stats.failed_requests += 1
            if self._sampler.allow("request_failed") is not None:
                log.warning(
                    "book_request_failed", symbol=self.symbol, error=rules.clip(str(error) or repr(error))
                )
            return None
        return reply

    def _sync(self, snapshot: DepthMsg) -> bool:
        """The book from ``snapshot``, then the buffered messages after its seq, in order; True once
        synced (False: a hole between the snapshot and the buffer, ask again)."""
        self.book.reset(snapshot.bids, snapshot.asks, snapshot.last_update_id)
        self.feed_run, self.seq = snapshot.feed_run, snapshot.seq
        pending = [u for u in self._buffer if u.feed_run == self.feed_run and (u.seq or 0) > (self.seq or 0)]
        self._buffer.clear()  # messages of another run: a later message of the new run shows the gap
        pending.sort(key=lambda u: u.seq or 0)
        for update in pending:
            if update.seq != (self.seq or 0) + 1:  # a hole between the reply and the buffer: ask again
                self.state = "resyncing"
                self.reason = f"seq {update.seq} after the book's {self.seq}: asking again"
                return False
            self._apply(update)
        self.state = "synced"
        self.stats.recoveries += 1
        self.reason = "synced"
        log.info(
            "book_synced", symbol=self.symbol, seq=self.seq, feed_run=self.feed_run, levels=len(self.book)
        )
        return True

    async def close(self) -> None:
        if self._recovering is not None:
            self._recovering.cancel()
            await asyncio.gather(self._recovering, return_exceptions=True)


__all__ = ["BookKeeper", "KeeperStats", "Requester"]
