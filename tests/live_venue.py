"""A venue that keeps trading: the fake Binance playing a book scenario at a pace, with its REST
snapshot always the book as of the last diff sent (so a feed that (re)connects mid-stream can sync,
as on the real venue), and the reference book to compare with at any point."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.fake_binance import FakeBinance, Market, agg_trade, book_scenario, futures_trade, spot_trade

TS_MS = 1_770_000_000_000


class LiveVenue:
    def __init__(
        self,
        venue: FakeBinance,
        symbol: str,
        market: Market,
        diffs: int = 300,
        seed: int = 17,
        raw_trades: bool = False,
    ) -> None:
        """``raw_trades`` (USD-M): each aggregate trade's fill on ``@trade`` too (``X`` = MARKET)."""
        self.venue = venue
        self.symbol = symbol.upper()
        self.market = market
        snapshot, self.diffs, expected = book_scenario(self.symbol, market, diffs, seed=seed, levels=100)
        assert expected is not None
        self.snapshot_id = snapshot.last_update_id
        self.bids: dict[str, str] = {p: q for p, q in snapshot.bids}  # noqa: C416 - [p, q] lists
        self.asks: dict[str, str] = {p: q for p, q in snapshot.asks}  # noqa: C416
        self.last_update_id = snapshot.last_update_id
        venue.load_snapshot(snapshot)
        self.sent = 0
        self.trades = 0
        self.depth_stream = f"{self.symbol.lower()}@depth@100ms"
        self.trade_stream = f"{self.symbol.lower()}@{'trade' if market == 'spot' else 'aggTrade'}"
        self.raw_trade_stream = f"{self.symbol.lower()}@trade" if raw_trades and market == "usdm" else None

    @property
    def streams(self) -> list[str]:
        raw = [] if self.raw_trade_stream is None else [self.raw_trade_stream]
        return [self.depth_stream, self.trade_stream, *raw]

    def book(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """The venue's book now (non-zero levels), as exact decimals."""
        return (
            {Decimal(p): Decimal(q) for p, q in self.bids.items() if Decimal(q)},
            {Decimal(p): Decimal(q) for p, q in self.asks.items() if Decimal(q)},
        )

    def best(self) -> tuple[Decimal, Decimal]:
        bids, asks = self.book()
        return max(bids), min(asks)

    @property
    def done(self) -> bool:
        return self.sent >= len(self.diffs)

    async def step(self) -> None:
        """One diff (and one trade) to every subscriber; the REST snapshot follows the book."""
        diff = self.diffs[self.sent]
        self.sent += 1
        await self.venue.send(self.depth_stream, diff)
        if diff["u"] > self.snapshot_id:  # levels are absolute: applying a diff twice is harmless
            for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
                for price, qty in levels:
                    if Decimal(qty):
                        side[price] = qty
                    else:
                        side.pop(price, None)
            self.last_update_id = diff["u"]
            self.venue.set_snapshot(
                self.symbol, self.last_update_id, self._levels(self.bids), self._levels(self.asks)
            )
        self.trades += 1
        await self.venue.send(self.trade_stream, self._trade(self.trades))
        if self.raw_trade_stream is not None:  # the aggregate's one fill
            n = self.trades
            fill = futures_trade(self.symbol, n, self._price(n), "0.01", n % 2 == 0, TS_MS + n)
            await self.venue.send(self.raw_trade_stream, fill)

    async def play(self, count: int, interval_s: float = 0.005) -> None:
        for _ in range(count):
            if self.done:
                return
            await self.step()
            await asyncio.sleep(interval_s)

    @staticmethod
    def _price(n: int) -> str:
        return f"{50_000 + n % 13}.{n % 100:02d}"

    def _trade(self, n: int) -> dict[str, Any]:
        price = self._price(n)
        if self.market == "spot":
            return spot_trade(self.symbol, n, price, "0.01", n % 2 == 0, TS_MS + n)
        return agg_trade(self.symbol, n, price, "0.01", n % 2 == 0, TS_MS + n, n, n, futures=True)

    @staticmethod
    def _levels(side: dict[str, str]) -> list[list[str]]:
        return [[p, q] for p, q in side.items() if Decimal(q)]
