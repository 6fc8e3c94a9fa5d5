"""docs/book.md's recipe, run as it is written, keeps the feed's book exactly: joining late, and
across a feed restart (a new feed_run)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from schemas import subjects
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from tests.fake_binance import ExpectedBook, FakeBinance, book_scenario
from tests.helpers import collect, eventually
from tests.test_book_requests import feed_with_books

DOC = (Path(__file__).parent.parent / "docs" / "book.md").read_text()
QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)
KeepBook = Callable[[Client, str, dict[str, Any]], Coroutine[Any, Any, None]]


def _recipe() -> KeepBook:
    """``keep_book`` from the first python block of docs/book.md, executed verbatim."""
    code = re.findall(r"```python\n(.*?)```", DOC, re.S)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/book.md", "exec"), namespace)
    keep_book: KeepBook = namespace["keep_book"]
    return keep_book


async def _feeds_book(nc: Client, symbol: str) -> dict[str, Any]:
    reply = json.loads((await nc.request(subjects.book(symbol), b"", timeout=2)).data)
    return {
        "bids": dict(reply["bids"]),
        "asks": dict(reply["asks"]),
        "seq": reply["seq"],
        "feed_run": reply["feed_run"],
    }


def _exact(side: dict[str, str]) -> dict[Decimal, Decimal]:
    """A side by value: the venue's reference writes 8 decimals, a reply keeps the venue's strings."""
    return {Decimal(price): Decimal(qty) for price, qty in side.items()}


async def _play(venue: FakeBinance, symbol: str, diffs: list[dict[str, Any]]) -> None:
    for diff in diffs:
        await venue.send(f"{symbol.lower()}@depth@100ms", diff)


async def test_the_documented_recipe_keeps_the_feeds_book_across_a_late_start_and_a_restart(
    nats_url: str, nc: Client, unique: str
) -> None:
    keep_book = _recipe()
    requests = await collect(nc, subjects.book(unique))  # a copy of every book request
    book: dict[str, Any] = {}
    task: asyncio.Task[None] | None = None
    compared = []
    references: list[ExpectedBook] = []
    try:
        for run, seed in enumerate((5, 6)):  # two runs of the feed, each with its own venue book
            snapshot, diffs, expected = book_scenario(unique, "spot", 100, seed=seed, levels=100)
            assert expected is not None
            async with FakeBinance("spot") as venue:
                venue.load_snapshot(snapshot)
                settings = BinanceSettings(
                    symbols=unique, binance_ws_url=venue.ws_url, binance_rest_url=venue.rest_url
                )
                async with feed_with_books(BinanceConnector(settings, QUICK), nats_url) as (stream, _):
                    await venue.wait_for_subscribers([f"{unique.lower()}@depth@100ms"])
                    await _play(venue, unique, diffs[:50])
                    await eventually(lambda: stream.book_copy(unique) is not None)
                    if task is None:  # the subscriber joins late, with 50 deltas already published
                        task = asyncio.create_task(keep_book(nc, unique, book))
                    # Joined (first run) or recovered from the restart (second): it holds this run's book.
                    await eventually(lambda: book.get("feed_run") == stream.feed_run, timeout_s=10)
                    await _play(venue, unique, diffs[50:])  # then follows the deltas one by one
                    feed = await _feeds_book(nc, unique)
                    seq = feed["seq"]
                    await eventually(lambda: book.get("seq") == seq, timeout_s=10)  # noqa: B023
                    compared.append((run, dict(book), feed, len(requests)))
                    references.append(expected)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert [run for run, *_ in compared] == [0, 1]
    for (_, kept, feed, _), venue_book in zip(compared, references, strict=True):
        assert kept["bids"] == feed["bids"] and kept["asks"] == feed["asks"]
        assert (kept["seq"], kept["feed_run"]) == (feed["seq"], feed["feed_run"])
        assert kept["bids"] and kept["asks"]
        assert (_exact(kept["bids"]), _exact(kept["asks"])) == (
            _exact(venue_book.bids),
            _exact(venue_book.asks),
        )
    assert compared[0][2]["feed_run"] != compared[1][2]["feed_run"]  # a restart really happened
    # One request to join, one after the restart (plus the test's own one per run): nothing lost.
    assert [n for *_, n in compared] == [2, 4]
