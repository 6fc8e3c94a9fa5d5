from __future__ import annotations

from decimal import Decimal

from schemas import DepthUpdate, TradeTick
from schemas.wire import DepthMsg, TradeMsg, decode_depth, decode_trade
from services.context.state import SymbolContext

S = 1_000_000_000
T0 = 1_700_000_000 * S


async def _no_feed(subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
    raise TimeoutError("no feed in this test")


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def _tick(i: int, price: str, qty: str, ts: int) -> TradeMsg:
    return decode_trade(_contract_tick(i, price, qty, ts).to_json())


def _contract_tick(i: int, price: str, qty: str, ts: int) -> TradeTick:
    return TradeTick(
        exchange="stub",
        symbol="X",
        trade_id=i,
        price=Decimal(price),
        qty=Decimal(qty),
        side="sell",
        is_buyer_maker=True,
        ts_event=ts,
        ts_recv=ts,
    )


def _depth(
    last: int,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    snapshot: bool = False,
    first: int | None = None,
    prev: int | None = None,
    seq: int | None = None,
) -> DepthMsg:
    return decode_depth(
        DepthUpdate.model_validate(
            {
                "exchange": "stub",
                "symbol": "X",
                "bids": bids,
                "asks": asks,
                "is_snapshot": snapshot,
                "first_update_id": first,
                "last_update_id": last,
                "prev_last_update_id": prev,
                "ts_event": 1,
                "ts_recv": 2,
                "seq": seq,
                "feed_run": "RUN1" if seq is not None else None,
            }
        ).to_json()
    )


def test_trade_windows_counts_rates_and_vwap() -> None:
    clock = Clock()
    context = SymbolContext("X", history=3, vwap_window_s=10, request=_no_feed, clock=clock)
    context.on_trade(_tick(1, "100", "1", T0))
    context.on_trade(_tick(2, "110", "3", T0 + 5 * S))
    clock.now += 30
    context.on_trade(_tick(3, "90", "1", T0 + 12 * S))  # the first trade leaves the 10 s VWAP window
    clock.now += 45  # the first two trades leave the per-minute count
    context.on_trade(_tick(4, "0.00000001", "2", T0 + 13 * S))

    snap = context.snapshot()

    assert snap.trade_count == 4
    assert snap.trades_per_minute == 2
    assert snap.trades_per_second == round(2 / 60, 6)
    assert [t.trade_id for t in snap.recent_trades] == [2, 3, 4]  # last N = 3
    assert snap.last_price == Decimal("0.00000001")
    # (110*3 + 90*1 + 0.00000001*2) / 6 = 70.0000000033...
    assert snap.vwap == Decimal("70.0000000033")
    assert snap.vwap_trades == 3
    assert snap.to_json().count(b'"last_price":"0.00000001"') == 1


async def test_book_from_snapshot_and_deltas_gives_best_prices_and_spread() -> None:
    context = SymbolContext("X", 10, 60, _no_feed)
    context.on_depth(
        _depth(10, [("100.0", "1"), ("99.5", "2")], [("100.5", "1"), ("101", "3")], snapshot=True, seq=1)
    )
    context.on_depth(_depth(12, [("100.0", "0"), ("100.2", "4")], [("100.5", "0")], first=11, seq=2))

    snap = context.snapshot()

    assert snap.book_synced
    assert (snap.best_bid, snap.best_ask, snap.spread) == (Decimal("100.2"), Decimal("101"), Decimal("0.8"))
    assert (snap.bid_levels, snap.ask_levels, snap.book_update_id) == (2, 1, 12)
    await context.keeper.close()
