"""Depth snapshots over REST, within Binance's request-weight budget.

One fetcher per connector serialises snapshot requests. It reads the used weight from the
``X-MBX-USED-WEIGHT-1M`` response header and waits for the next minute rather than cross the
budget; a 429 (too many requests) or 418 (IP ban) waits for as long as ``Retry-After`` says; server
errors and network failures back off and retry. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from services.common.logging import get_logger
from services.connector_feed.binance.parse import Market
from services.connector_feed.binance.parse_depth import MalformedFrame, Snapshot, parse_rest_snapshot

log = get_logger("binance")

PATH = {"spot": "/api/v3/depth", "usdm": "/fapi/v1/depth"}
#: Request-weight limit per minute (spot 6000, USD-M 2400); we stay under 80 % of it.
WEIGHT_LIMIT = {"spot": 6000, "usdm": 2400}
BUDGET_SHARE = 0.8


def request_weight(market: Market, limit: int) -> int:
    """Weight of one depth snapshot request (Binance's tables)."""
    if market == "spot":
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


class SnapshotError(Exception):
    """The venue refused the request for good (e.g. 400 invalid symbol)."""


class SnapshotFetcher:
    def __init__(
        self,
        rest_url: str,
        market: Market,
        limit: int,
        session: aiohttp.ClientSession,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = rest_url.rstrip("/") + PATH[market]
        self.market = market
        self.limit = limit
        self.session = session
        self._sleep = sleep
        self._clock = clock
        self._lock = asyncio.Lock()
        self.used_weight = 0
        self._weight_minute = -1
        self.requests = 0
        self.rate_limited = 0  # 429 / 418 answers
        self.errors = 0

    async def fetch(self, venue_symbol: str) -> Snapshot:
        async with self._lock:  # one request at a time: the budget is per IP
            failures = 0
            while True:
                await self._respect_budget()
                try:
                    return await self._request(venue_symbol)
                except _RetryAfter as wait:
                    self.rate_limited += 1
                    log.warning(
                        "binance_rate_limited",
                        status=wait.status,
                        retry_after_s=wait.seconds,
                        symbol=venue_symbol,
                    )
                    await self._sleep(wait.seconds)
                except (aiohttp.ClientError, TimeoutError, MalformedFrame, _ServerError) as error:
                    self.errors += 1
                    failures += 1
                    delay = min(0.5 * 2 ** (failures - 1), 8.0)
                    log.warning(
                        "binance_snapshot_error", symbol=venue_symbol, error=repr(error), retry_in_s=delay
                    )
                    await self._sleep(delay)

    async def _respect_budget(self) -> None:
        now = self._clock()
        minute = int(now // 60)
        if minute != self._weight_minute:
            self._weight_minute, self.used_weight = minute, 0
        budget = WEIGHT_LIMIT[self.market] * BUDGET_SHARE
        if self.used_weight + request_weight(self.market, self.limit) > budget:
            wait = (minute + 1) * 60 - now + 0.05
            log.warning("binance_weight_budget_wait", used_weight=self.used_weight, wait_s=round(wait, 2))
            await self._sleep(wait)

    async def _request(self, venue_symbol: str) -> Snapshot:
        self.requests += 1
        params = {"symbol": venue_symbol, "limit": str(self.limit)}
        async with self.session.get(
            self.url, params=params, timeout=aiohttp.ClientTimeout(total=10)
        ) as reply:
            used = reply.headers.get("X-MBX-USED-WEIGHT-1M")
            if used is not None and used.isdigit():
                self.used_weight = int(used)
                self._weight_minute = int(self._clock() // 60)
            body = await reply.read()
            if reply.status in (429, 418):
                retry_after = reply.headers.get("Retry-After", "")
                raise _RetryAfter(
                    reply.status, float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 60.0
                )
            if reply.status >= 500:
                raise _ServerError(f"HTTP {reply.status}")
            if reply.status != 200:
                raise SnapshotError(f"{venue_symbol}: HTTP {reply.status} {body[:200]!r}")
        return parse_rest_snapshot(body)


class _RetryAfter(Exception):
    def __init__(self, status: int, seconds: float) -> None:
        super().__init__(f"HTTP {status}, retry after {seconds}s")
        self.status = status
        self.seconds = seconds


class _ServerError(Exception):
    pass
