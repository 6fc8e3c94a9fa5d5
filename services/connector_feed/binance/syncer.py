"""The snapshot syncer: REST depth snapshots for the local books, within the venue's budget.

A book asks (``want``) when it needs a snapshot; one worker fetches them one at a time through
``rest.SnapshotFetcher`` (request weight, 429/418 ``Retry-After``, retries with backoff) and hands
each to the decoder, whose events it delivers. A snapshot refused as older than the buffered diffs
is fetched again after REFETCH_DELAY_S; a symbol the venue refuses for good (HTTP 4xx) goes
``down`` with the venue's reason and is not asked for again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from services.common.logging import get_logger
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.parse import Market
from services.connector_feed.binance.rest import SnapshotError, SnapshotFetcher
from services.connector_feed.binance.tap import RecorderTap
from services.connector_feed.connector import FeedSink

log = get_logger("binance")

#: Pause before fetching again a snapshot that was refused as older than the buffered events.
REFETCH_DELAY_S = 0.5


class SnapshotSyncer:
    def __init__(self, rest_url: str, market: Market, limit: int, decoder: BinanceDecoder) -> None:
        self.rest_url = rest_url
        self.market = market
        self.limit = limit
        self.decoder = decoder
        self.tap: RecorderTap | None = None
        self._wanted: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self.fetcher: SnapshotFetcher | None = None

    def want(self, symbol: str) -> None:
        """A book needs a snapshot (called by the decoder; at most one queued per symbol)."""
        if symbol not in self._queued and symbol not in self.decoder.refused:
            self._queued.add(symbol)
            self._wanted.put_nowait(symbol)

    async def run(self, sink: FeedSink) -> None:
        async with aiohttp.ClientSession() as session:
            self.fetcher = SnapshotFetcher(self.rest_url, self.market, self.limit, session)
            while True:
                symbol = await self._wanted.get()
                await self._sync(self.fetcher, symbol, sink)

    async def _sync(self, fetcher: SnapshotFetcher, symbol: str, sink: FeedSink) -> None:
        venue = self.decoder.venue_of[symbol]
        try:
            snapshot = await fetcher.fetch(venue)
        except SnapshotError as error:  # the venue refused the symbol for good: stop asking
            self._queued.discard(symbol)
            log.error("binance_symbol_refused", symbol=symbol, error=str(error))
            await sink.deliver(self.decoder.refuse(symbol, f"venue refused {venue}: {error}"))
            return
        self._queued.discard(symbol)
        if self.tap is not None:
            self.tap.snapshot(venue, time.time_ns(), snapshot.raw)
        await sink.deliver(self.decoder.on_snapshot(symbol, snapshot))
        book = self.decoder.books.get(symbol)
        if book is not None and book.snapshot_wanted and symbol not in self._queued:
            await asyncio.sleep(REFETCH_DELAY_S)  # refused as too old: ask again, without hammering
            self.want(symbol)

    def health(self) -> dict[str, Any] | None:
        fetcher = self.fetcher
        if fetcher is None:
            return None
        return {
            "requests": fetcher.requests,
            "used_weight": fetcher.used_weight,
            "rate_limited": fetcher.rate_limited,
            "errors": fetcher.errors,
        }
