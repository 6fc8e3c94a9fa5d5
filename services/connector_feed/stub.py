"""``StubbedConnector``: synthetic trades (a random walk) and top-10 depth snapshots.

Deterministic for a given STUB_SEED (the values; timestamps are the wall clock). Rates are per
symbol; 0 means as fast as ``next_event`` is called (benchmarks).
"""

from __future__ import annotations

import random
import time
from typing import Any

from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.settings import FeedSettings

TICK_CENTS = 1  # prices move in cents
DEPTH_LEVELS = 10
#: Random-walk steps in ticks, indexed by two random bits: down, flat, up, flat.
_STEPS = (-TICK_CENTS, 0, TICK_CENTS, 0)


class _Lane:
    """One symbol's generator state."""

    def __init__(self, symbol: str, start_cents: int, seed: int | None) -> None:
        self.symbol = symbol
        # One generator per symbol and kind: the values do not depend on how they interleave.
        entropy = random.SystemRandom().random() if seed is None else seed
        self.trade_rng = random.Random(f"{entropy}:{symbol}:trades")
        self.depth_rng = random.Random(f"{entropy}:{symbol}:depth")
        self.cents = start_cents
        self.trade_id = 0
        self.update_id = 0
        self.trades_sent = 0
        self.depth_sent = 0


class StubbedConnector(ConnectorWrapper):
    exchange = "stub"

    def __init__(self, settings: FeedSettings) -> None:
        self._trade_rate = settings.stub_trades_per_s
        self._depth_rate = settings.stub_depth_per_s
        start = int(settings.stub_start_price.replace(".", ""))
        self._lanes = {s: _Lane(s, start, settings.stub_seed) for s in settings.symbols}
        self._connected = False
        self._trades: list[_Lane] = []
        self._depth: list[_Lane] = []
        self._started = 0.0
        self._turn = 0
        self.event_counter = 0

    async def connect(self) -> None:
        self._connected = True
        self._started = time.monotonic()

    async def disconnect(self) -> None:
        self._connected = False

    async def subscribe_trades(self, symbol: str) -> None:
        lane = self._lane(symbol)
        if lane not in self._trades:
            self._trades.append(lane)

    async def subscribe_depth(self, symbol: str) -> None:
        lane = self._lane(symbol)
        if lane not in self._depth:
            self._depth.append(lane)

    async def is_connected(self) -> bool:
        return self._connected

    def get_health_status(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "subscribed_trades": bool(self._trades),
            "subscribed_depth": bool(self._depth),
            "event_counter": self.event_counter,
        }

    async def next_event(self) -> dict[str, Any] | None:
        if not self._connected:
            raise ConnectionError("stub connector is not connected")
        elapsed = time.monotonic() - self._started
        self._turn += 1
        # Alternate which kind gets the first chance, so neither starves the other at full speed.
        kinds = (
            (self._next_trade, self._next_depth) if self._turn % 2 else (self._next_depth, self._next_trade)
        )
        for make in kinds:
            event = make(elapsed)
            if event is not None:
                self.event_counter += 1
                return event
        return None

    def _lane(self, symbol: str) -> _Lane:
        try:
            return self._lanes[symbol]
        except KeyError:
            raise ValueError(
                f"stub connector does not serve {symbol!r} (SYMBOLS={list(self._lanes)})"
            ) from None

    @staticmethod
    def _due(sent: int, rate: float, elapsed: float) -> bool:
        return rate == 0 or sent < elapsed * rate

    @staticmethod
    def _round_robin(lanes: list[_Lane], start: int) -> list[_Lane]:
        """Every symbol gets its turn first in rotation, so none starves at full speed."""
        if len(lanes) < 2:
            return lanes
        k = start % len(lanes)
        return lanes[k:] + lanes[:k]

    def _next_trade(self, elapsed: float) -> dict[str, Any] | None:
        for lane in self._round_robin(self._trades, self._turn // 2):
            if self._due(lane.trades_sent, self._trade_rate, elapsed):
                lane.trades_sent += 1
                return self._make_trade(lane)
        return None

    def _next_depth(self, elapsed: float) -> dict[str, Any] | None:
        for lane in self._round_robin(self._depth, self._turn // 2):
            if self._due(lane.depth_sent, self._depth_rate, elapsed):
                lane.depth_sent += 1
                return self._make_depth(lane)
        return None

    def _make_trade(self, lane: _Lane) -> dict[str, Any]:
        bits = lane.trade_rng.getrandbits(32)  # one draw: step, side and size
        lane.cents = max(TICK_CENTS, lane.cents + _STEPS[bits & 3])
        lane.trade_id += 1
        buyer_is_maker = bool(bits & 4)
        return {
            "type": "trade",
            "symbol": lane.symbol,
            "timestamp": time.time_ns(),
            "price": _cents_to_str(lane.cents),
            "qty": f"0.{(bits >> 3) % 99_999 + 1:05d}",
            "side": "sell" if buyer_is_maker else "buy",
            "is_buyer_maker": buyer_is_maker,
            "id": lane.trade_id,
        }

    def _make_depth(self, lane: _Lane) -> dict[str, Any]:
        rng = lane.depth_rng
        lane.update_id += 1
        bid = lane.cents - TICK_CENTS
        ask = lane.cents + TICK_CENTS
        return {
            "type": "depth",
            "symbol": lane.symbol,
            "timestamp": time.time_ns(),
            "bids": [
                (_cents_to_str(bid - i * TICK_CENTS), f"{rng.randrange(1, 500) / 100:.2f}")
                for i in range(DEPTH_LEVELS)
                if bid - i * TICK_CENTS > 0
            ],
            "asks": [
                (_cents_to_str(ask + i * TICK_CENTS), f"{rng.randrange(1, 500) / 100:.2f}")
                for i in range(DEPTH_LEVELS)
            ],
            "last_update_id": lane.update_id,
            "is_snapshot": True,
        }


def _cents_to_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
