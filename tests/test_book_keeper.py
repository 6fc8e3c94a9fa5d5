"""The subscriber-side book keeper: synced or resyncing, never silently wrong.

A scripted "feed" publishes sequenced depth messages and answers book requests from its own book;
the keeper sees the stream with gaps, duplicates, restarts and replies of any shape.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.wire import DepthMsg, decode_depth
from services.common.book import OrderBook, price_key
from services.common.book_keeper import BookKeeper
from tests.helpers import eventually

SYMBOL = "BTCUSDT"
PRICES = [f"{p}.5" for p in range(90, 111)]


Levels = tuple[dict[str, Decimal], dict[str, Decimal]]


def levels(book: OrderBook) -> Levels:
    return {price_key(p): Decimal(q) for p, q in book.bids()}, {
        price_key(p): Decimal(q) for p, q in book.asks()
    }


class Feed:
    """A feed's depth stream and its book on request, as connector_feed keeps them."""

    def __init__(self, run: str = "RUN1") -> None:
        self.run = run
        self.seq = 0
        self.book = OrderBook()
        self.book.reset([("99.5", "1")], [("101.5", "1")], 1)
        self.requests = 0
        self.answer: str = "book"  # or "error", "timeout", "garbage"
        self.history: dict[tuple[str, int], Levels] = {(run, 0): levels(self.book)}  # the book at each seq

    def restart(self, run: str) -> None:
        self.run, self.seq = run, 0
        self.history[(run, 0)] = levels(self.book)

    def delta(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> DepthMsg:
        last = (self.book.last_update_id or 0) + 1
        self.book.apply(bids, asks, last)
        self.seq += 1
        self.history[(self.run, self.seq)] = levels(self.book)
        return self._message(bids, asks, False, last)

    def snapshot(self) -> DepthMsg:
        self.seq += 1
        self.history[(self.run, self.seq)] = levels(self.book)
        return self._message(self.book.bids(), self.book.asks(), True, self.book.last_update_id or 0)

    def _message(
        self, bids: Any, asks: Any, is_snapshot: bool, last: int, seq: int | None = None
    ) -> DepthMsg:
        return decode_depth(
            orjson.dumps(
                {
                    "exchange": "binance",
                    "symbol": SYMBOL,
                    "bids": bids,
                    "asks": asks,
                    "is_snapshot": is_snapshot,
                    "first_update_id": None if is_snapshot else last,
                    "last_update_id": last,
                    "ts_event": 1,
                    "ts_recv": 1,
                    "seq": self.seq if seq is None else seq,
                    "feed_run": self.run,
                }
            )
        )

    async def request(self, subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
        self.requests += 1
        assert subject == f"md.{SYMBOL}.book"
        if self.answer == "timeout":
            raise TimeoutError("no reply")
        if self.answer == "error":
            return {"Nats-Service-Error-Code": "503", "Nats-Service-Error": "resyncing"}, b"{}"
        if self.answer == "garbage":
            return {}, b"[1, 2, 3]"
        reply = self._message(
            self.book.bids(), self.book.asks(), True, self.book.last_update_id or 0, self.seq
        )
        return {}, msgspec.json.encode(reply)


def same_book(keeper: BookKeeper, feed: Feed) -> bool:
    return levels(keeper.book) == levels(feed.book)


async def test_a_late_keeper_asks_for_the_book_buffers_meanwhile_and_syncs_exactly() -> None:
    feed = Feed()
    for i in range(5):
        feed.delta([(PRICES[i], "2")], [])
    keeper = BookKeeper(SYMBOL, feed.request)

    keeper.on_depth(feed.delta([(PRICES[6], "3")], []))  # joins here: buffered, book requested
    keeper.on_depth(feed.delta([], [(PRICES[15], "1")]))
    await eventually(lambda: keeper.synced)
    keeper.on_depth(feed.delta([(PRICES[6], "0")], []))

    assert same_book(keeper, feed)
    assert keeper.seq == feed.seq
    assert (keeper.stats.requests, keeper.stats.recoveries, keeper.stats.gaps) == (1, 1, 0)
    await keeper.close()


async def test_a_seq_gap_a_restart_and_a_lost_subscription_each_resync_by_request() -> None:
    feed = Feed()
    keeper = BookKeeper(SYMBOL, feed.request)
    keeper.on_depth(feed.snapshot())
    assert keeper.synced

    feed.delta([(PRICES[1], "1")], [])  # lost on the way
    keeper.on_depth(feed.delta([(PRICES[2], "1")], []))
    assert keeper.state == "resyncing"  # knows it is wrong
    await eventually(lambda: keeper.synced and same_book(keeper, feed))

    feed.restart("RUN2")
    keeper.on_depth(feed.delta([(PRICES[3], "1")], []))  # seq 1 of a new run
    await eventually(lambda: keeper.synced and keeper.feed_run == "RUN2" and same_book(keeper, feed))

    keeper.lost("slow_consumer", "NATS dropped messages")
    assert not keeper.synced
    await eventually(lambda: keeper.synced)

    assert keeper.stats.reasons == {"seq_gap": 1, "new_feed_run": 1, "slow_consumer": 1}
    assert keeper.stats.recoveries == 4
    await keeper.close()


async def test_a_loss_while_the_request_is_out_asks_again_even_if_the_stream_is_quiet() -> None:
    """A reply made before messages were lost must not end the resync: with the stream quiet after
    the loss (its tail was dropped), no later message would ever show the hole."""
    feed = Feed()
    keeper = BookKeeper(SYMBOL, feed.request)
    keeper.on_depth(feed.snapshot())
    answer = feed.request

    async def slow_reply(subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
        reply = await answer(subject, body)  # the book as it is now...
        if feed.requests == 1:
            feed.delta([(PRICES[4], "7")], [])  # ...then the tail of a burst, dropped for us
            keeper.lost("slow_consumer", "NATS dropped messages")
        return reply

    keeper._request = slow_reply
    keeper.lost("slow_consumer", "NATS dropped messages")
    await eventually(lambda: keeper.synced)

    assert same_book(keeper, feed) and keeper.seq == feed.seq
    assert feed.requests == 2
    await keeper.close()


async def test_a_snapshot_in_the_stream_syncs_without_waiting_for_the_reply() -> None:
    feed = Feed()
    feed.answer = "timeout"
    keeper = BookKeeper(SYMBOL, feed.request)
    keeper.on_depth(feed.delta([(PRICES[1], "1")], []))

    keeper.on_depth(feed.snapshot())  # a periodic snapshot on md.<SYMBOL>.depth

    assert keeper.synced and same_book(keeper, feed)
    await keeper.close()


@pytest.mark.parametrize("answer", ["error", "timeout", "garbage"])
async def test_failed_requests_are_retried_until_the_feed_answers(answer: str) -> None:
    feed = Feed()
    feed.answer = answer
    keeper = BookKeeper(SYMBOL, feed.request)
    keeper.on_depth(feed.delta([(PRICES[1], "1")], []))
    await eventually(lambda: feed.requests >= 2)
    assert not keeper.synced  # never pretends

    feed.answer = "book"
    await eventually(lambda: keeper.synced, timeout_s=10)

    assert same_book(keeper, feed)
    assert keeper.stats.failed_requests >= 2
    await keeper.close()


async def test_duplicates_are_ignored() -> None:
    feed = Feed()
    keeper = BookKeeper(SYMBOL, feed.request)
    keeper.on_depth(feed.snapshot())
    delta = feed.delta([(PRICES[1], "1")], [])

    keeper.on_depth(delta)
    keeper.on_depth(delta)

    assert keeper.synced and keeper.stats.gaps == 0 and same_book(keeper, feed)
    await keeper.close()


events = st.lists(
    st.one_of(
        st.tuples(
            st.just("delta"), st.sampled_from(PRICES), st.sampled_from(["0", "1", "2.5"]), st.booleans()
        ),
        st.tuples(st.just("drop"), st.sampled_from(PRICES), st.sampled_from(["0", "7"]), st.booleans()),
        st.tuples(st.just("dup"), st.just(""), st.just(""), st.just(False)),
        st.tuples(st.just("snapshot"), st.just(""), st.just(""), st.just(False)),
        st.tuples(st.just("restart"), st.just(""), st.just(""), st.just(False)),
        st.tuples(st.just("lost"), st.just(""), st.just(""), st.just(False)),
        st.tuples(st.just("settle"), st.just(""), st.just(""), st.just(False)),
    ),
    max_size=40,
)


@settings(max_examples=60)
@given(script=events)
def test_whenever_the_keeper_says_synced_its_book_is_the_feeds(
    script: list[tuple[str, str, str, bool]],
) -> None:
    async def run() -> None:
        feed = Feed()
        keeper = BookKeeper(SYMBOL, feed.request)
        last: DepthMsg | None = None
        runs = 1
        for action, price, qty, bid in script:
            if action in ("delta", "drop"):
                message = feed.delta([(price, qty)] if bid else [], [] if bid else [(price, qty)])
                if action == "delta":
                    keeper.on_depth(message)
                    last = message
            elif action == "dup" and last is not None:
                keeper.on_depth(last)
            elif action == "snapshot":
                keeper.on_depth(feed.snapshot())
            elif action == "restart":
                runs += 1
                feed.restart(f"RUN{runs}")
            elif action == "lost":
                keeper.lost("slow_consumer", "test")
            elif action == "settle":
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            if keeper.synced:  # its book is the feed's book at the seq it has reached (maybe not the latest)
                assert keeper.feed_run is not None and keeper.seq is not None
                assert levels(keeper.book) == feed.history[(keeper.feed_run, keeper.seq)]
        keeper.on_depth(feed.snapshot())
        assert keeper.synced and same_book(keeper, feed)
        await keeper.close()

    asyncio.run(run())
