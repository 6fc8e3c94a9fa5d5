from __future__ import annotations

import aiohttp
import pytest

from services.connector_feed.binance.rest import SnapshotError, SnapshotFetcher, request_weight
from tests.fake_binance import FakeBinance


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_snapshot_honours_retry_after_on_429_and_418() -> None:
    sleeps = Sleeps()
    async with FakeBinance("spot") as venue, aiohttp.ClientSession() as session:
        venue.set_snapshot("BTCUSDT", 42, [["1.00000000", "2.00000000"]], [["1.10000000", "3.00000000"]])
        venue.reject_next(status=429, retry_after=3)
        venue.reject_next(status=418, retry_after=7)
        fetcher = SnapshotFetcher(venue.rest_url, "spot", 1000, session, sleep=sleeps)

        snapshot = await fetcher.fetch("BTCUSDT")

    assert snapshot.last_update_id == 42 and snapshot.bids == [["1.00000000", "2.00000000"]]
    assert sleeps.calls == [3.0, 7.0]
    assert fetcher.rate_limited == 2 and fetcher.used_weight > 0


async def test_weight_budget_waits_for_the_next_minute() -> None:
    sleeps = Sleeps()
    now = [600.0]  # minute 10
    async with FakeBinance("usdm") as venue, aiohttp.ClientSession() as session:
        venue.set_snapshot("BTCUSDT", 1, [["1.00000000", "1.00000000"]], [["2.00000000", "1.00000000"]])
        fetcher = SnapshotFetcher(venue.rest_url, "usdm", 1000, session, sleep=sleeps, clock=lambda: now[0])
        venue.used_weight = 1900  # others on this IP used most of the minute's 2400

        await fetcher.fetch("BTCUSDT")  # the header now says 1920: 80 % of the limit
        assert sleeps.calls == [] and fetcher.used_weight == 1920
        await fetcher.fetch("BTCUSDT")

    assert len(sleeps.calls) == 1 and 59 < sleeps.calls[0] <= 60.1  # waits for the next minute


async def test_an_invalid_symbol_is_refused_for_good() -> None:
    async with FakeBinance("spot") as venue, aiohttp.ClientSession() as session:
        fetcher = SnapshotFetcher(venue.rest_url, "spot", 100, session)

        with pytest.raises(SnapshotError, match="HTTP 400"):
            await fetcher.fetch("NOPE")


def test_request_weights_follow_binance_tables() -> None:
    assert [request_weight("spot", n) for n in (100, 500, 1000, 5000)] == [5, 25, 50, 250]
    assert [request_weight("usdm", n) for n in (50, 100, 500, 1000)] == [2, 5, 10, 20]
