"""What the Binance connector's tests share: a feed on the fake venue, and what subscribers see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from nats.aio.msg import Msg

from schemas import DepthUpdate, Status
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.stream import HFTConnectorStream
from tests.fake_binance import ExpectedBook, FakeBinance
from tests.helpers import running_stream

QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0, reset_after_s=60)


@asynccontextmanager
async def feed(
    venue: FakeBinance, nats_url: str, symbols: str, policy: ReconnectPolicy = QUICK, **overrides: Any
) -> AsyncIterator[HFTConnectorStream]:
    """The Binance connector on ``venue`` -> the feed -> NATS, for the block."""
    settings = BinanceSettings(
        binance_market=venue.market,
        symbols=symbols,
        binance_ws_url=venue.ws_url,
        binance_rest_url=venue.rest_url,
        **overrides,
    )
    async with running_stream(
        BinanceConnector(settings, policy), nats_url, settings.symbols, policy, "binance"
    ) as stream:
        yield stream


def states(messages: list[Msg]) -> list[str]:
    """The states published on md.<SYMBOL>.status, in order."""
    return [Status.model_validate_json(m.data).state for m in messages]


def snapshots(messages: list[Msg]) -> int:
    """How many md.<SYMBOL>.depth messages were whole books."""
    return sum(DepthUpdate.model_validate_json(m.data).is_snapshot for m in messages)


class SubscriberBook:
    """What any subscriber does with md.<SYMBOL>.depth: rebuild the book and check the chain."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        self.last: int | None = None
        self.snapshots = 0
        self.chain_breaks = 0

    @classmethod
    def of(cls, messages: list[Msg]) -> SubscriberBook:
        book = cls()
        for msg in messages:
            book.on(DepthUpdate.model_validate_json(msg.data))
        return book

    def on(self, update: DepthUpdate) -> None:
        if update.is_snapshot:
            self.bids = {p: format(q, "f") for p, q in update.bids}
            self.asks = {p: format(q, "f") for p, q in update.asks}
            self.snapshots += 1
        else:
            assert self.last is not None
            continues = (
                update.prev_last_update_id == self.last
                if update.prev_last_update_id is not None
                else update.first_update_id == self.last + 1
            )
            if not continues:
                self.chain_breaks += 1
            for side, levels in ((self.bids, update.bids), (self.asks, update.asks)):
                for price, qty in levels:
                    if qty == 0:
                        side.pop(price, None)
                    else:
                        side[price] = format(qty, "f")
        self.last = update.last_update_id

    def levels(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        return (
            {p: Decimal(q) for p, q in self.bids.items()},
            {p: Decimal(q) for p, q in self.asks.items()},
        )

    def equals(self, expected: ExpectedBook) -> bool:
        def canon(side: dict[str, str]) -> dict[Decimal, Decimal]:
            return {Decimal(p): Decimal(q) for p, q in side.items()}

        return (
            self.levels() == (canon(expected.bids), canon(expected.asks))
            and self.last == expected.last_update_id
        )
