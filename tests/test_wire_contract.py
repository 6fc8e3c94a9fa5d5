"""The feed's fast encoder writes exactly the bytes the pydantic contracts serialise to."""

from __future__ import annotations

import random
from decimal import Decimal

from schemas import DepthUpdate, TradeTick
from services.connector_feed.events import Depth, Trade
from services.connector_feed.normalize import wire_decimal


def _random_decimal(rng: random.Random, positive: bool) -> object:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.uniform(0.000001, 100000.0)  # float -> shortest repr
    if kind == 1:
        return f"{rng.randrange(1, 10**9)}.{rng.randrange(0, 10**8):08d}"  # venue string
    if kind == 2:
        return f"0.{rng.randrange(1, 10**8):08d}"  # tiny: would be "1E-8" with str(Decimal)
    if kind == 3:
        return rng.randrange(1 if positive else 0, 10**6)
    return Decimal(f"{rng.randrange(1, 10**4)}e{rng.randrange(-9, 3)}")  # a Decimal in exponent form -> plain


def test_fast_trade_encoding_equals_the_contract_bytes() -> None:
    rng = random.Random(42)
    for i in range(2000):
        buyer_maker = rng.random() < 0.5
        trade = Trade(
            "binance",
            "BTCUSDT",
            i,
            wire_decimal(_random_decimal(rng, True), "price", positive=True),
            wire_decimal(_random_decimal(rng, True), "qty", positive=True),
            "sell" if buyer_maker else "buy",
            buyer_maker,
            1_700_000_000_000_000_000 + i,
            1_700_000_000_000_000_500 + i,
        )

        contract = TradeTick.model_validate_json(trade.wire())

        assert contract.to_json() == trade.wire()
        assert Trade.from_contract(contract).wire() == trade.wire()


def test_fast_depth_encoding_equals_the_contract_bytes() -> None:
    rng = random.Random(7)
    for i in range(500):
        levels = [
            (
                wire_decimal(_random_decimal(rng, True), "price", positive=True),
                wire_decimal(_random_decimal(rng, False), "qty", positive=False),
            )
            for _ in range(rng.randrange(0, 20))
        ]
        is_snapshot = rng.random() < 0.3
        depth = Depth(
            "binance_usdm",
            "BTCUSDT-PERP",
            levels,
            levels[::-1],
            is_snapshot,
            None if is_snapshot else i + 1,
            i + 3,
            None if is_snapshot else i,
            i,
            i + 1,
        )

        contract = DepthUpdate.model_validate_json(depth.wire())

        assert contract.to_json() == depth.wire()
        assert Depth.from_contract(contract).wire() == depth.wire()
