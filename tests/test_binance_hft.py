"""CONNECTOR_NAME=binance_hft without a venue: the seed's dicts, the hand-off, and no order path."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from schemas import Status, subjects
from services.common.reconnect import ReconnectPolicy
from services.common.settings import load_settings
from services.connector_feed.binance import rest, syncer
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.hft import BinanceHFTConnector
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.binance.supervisor import LinkSupervisor
from services.connector_feed.connector import ConnectorEvent, ConnectorWrapper
from services.connector_feed.events import Depth, Trade
from services.connector_feed.factory import build_connector
from services.connector_feed.handoff import Handoff
from services.connector_feed.normalize import Normalizer
from services.connector_feed.polling import PollingConnector
from services.connector_feed.seed_format import seed_event
from services.connector_feed.settings import FeedSettings
from tests.fakes import ScriptedConnector
from tests.helpers import collect, eventually, running_stream

RECV = 1_770_000_000_123_456_789
LATER = RECV + 5_000_000

wire_decimals = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(min_value=1, max_value=10**9),
    st.text(alphabet="0123456789", max_size=8),
)
levels = st.lists(st.tuples(wire_decimals, wire_decimals), max_size=5)
ids = st.integers(min_value=0, max_value=2**62)
times = st.integers(min_value=10**18, max_value=2 * 10**18)
trades = st.builds(
    lambda tid, px, qty, maker, ts: Trade(
        "binance", "BTCUSDT", tid, px, qty, "sell" if maker else "buy", maker, ts, RECV
    ),
    ids,
    wire_decimals,
    wire_decimals,
    st.booleans(),
    times,
)
depths = st.builds(
    lambda bids, asks, last, span, snapshot, ts: Depth(
        "binance",
        "BTCUSDT",
        bids,
        asks,
        snapshot,
        None if snapshot else max(0, last - span),
        last,
        None if snapshot else max(0, last - span - 1),
        ts,
        RECV,
    ),
    levels,
    levels,
    ids,
    st.integers(min_value=0, max_value=100),
    st.just(False),
    times,
)


@given(event=trades | depths)
def test_a_seed_dict_normalises_back_to_the_very_event(event: Trade | Depth) -> None:
    as_dict = seed_event(event)

    back = Normalizer("binance", ["BTCUSDT"]).normalize(as_dict, LATER)

    assert back == event  # prices as the same strings, ts_recv the frame's, not the later ask
    assert back.ts_recv == RECV


def test_the_seed_dicts_have_the_guides_fields() -> None:
    trade = Trade("binance", "BTCUSDT", 7, "65000.10", "0.002", "sell", True, 1, RECV)
    depth = Depth("binance", "BTCUSDT", [("1.5", "2")], [], False, 10, 12, 9, 1, RECV)

    trade_dict, depth_dict = seed_event(trade), seed_event(depth)

    assert {"type", "timestamp", "price", "qty", "side", "is_buyer_maker", "id"} <= trade_dict.keys()
    assert (trade_dict["type"], trade_dict["price"], trade_dict["side"], trade_dict["id"]) == (
        "trade",
        "65000.10",
        "sell",
        7,
    )
    assert {"type", "timestamp", "bids", "asks", "last_update_id"} <= depth_dict.keys()
    assert (depth_dict["first_update_id"], depth_dict["last_update_id"]) == (10, 12)
    assert depth_dict["prev_last_update_id"] == 9 and depth_dict["is_snapshot"] is False


# ---- the hand-off: bounded by backpressure, lossless, in order ---------------------------------


async def test_handoff_stops_the_producer_at_high_water_and_resumes_it_at_half() -> None:
    handoff = Handoff(high_water=4)
    statuses = [
        Status(exchange="x", symbol=f"S{i}", stream="all", state="live", reason="up", ts=i) for i in range(6)
    ]

    accepted = [handoff.put([s]) for s in statuses[:4]]
    waiting = asyncio.create_task(handoff.room())
    await asyncio.sleep(0)
    blocked_at_3 = not waiting.done()
    taken = [await handoff.get() for _ in range(2)]
    await asyncio.wait_for(waiting, 1)

    assert accepted == [True, True, True, False] and handoff.pauses == 1
    assert blocked_at_3  # still above half (2) after the producer was told to stop
    assert taken == statuses[:2] and len(handoff) == 2


async def test_handoff_waits_for_the_next_item_and_ends_after_the_last() -> None:
    handoff = Handoff(high_water=10)
    status = Status(exchange="x", symbol="S", stream="all", state="live", reason="up", ts=1)
    getter = asyncio.create_task(handoff.get())
    await asyncio.sleep(0)
    was_waiting = not getter.done()

    handoff.put([status, status])
    first = await asyncio.wait_for(getter, 1)
    handoff.close()
    second, end = await handoff.get(), await handoff.get()

    assert was_waiting and (first, second, end) == (status, status, None)


# ---- market data only: no order path, and paper trading cannot be turned off -------------------

#: Words of a method that could send, change or cancel an order, or hold what signs one.
ORDER_WORDS = frozenset(
    [
        "order",
        "orders",
        "cancel",
        "submit",
        "place",
        "amend",
        "modify",
        "position",
        "positions",
        "balance",
        "balances",
        "account",
        "withdraw",
        "leverage",
        "margin",
        "key",
        "secret",
        "sign",
        "signature",
    ]
)


def orderish(names: list[str]) -> list[str]:
    return [name for name in names if ORDER_WORDS & set(name.lower().strip("_").split("_"))]


@pytest.mark.parametrize(
    "cls",
    [BinanceHFTConnector, ConnectorWrapper, PollingConnector, BinanceConnector, LinkSupervisor],
    ids=lambda c: c.__name__,
)
def test_no_class_between_the_feed_and_binance_has_an_order_method(cls: type) -> None:
    assert orderish(dir(cls)) == []


def test_the_binance_client_holds_no_credentials_and_calls_only_public_depth() -> None:
    credentials = [f for f in BinanceSettings.model_fields if {"key", "secret", "api"} & set(f.split("_"))]

    assert credentials == []
    assert rest.PATH == {"spot": "/api/v3/depth", "usdm": "/fapi/v1/depth"}
    assert orderish(dir(syncer.SnapshotSyncer)) == orderish(dir(rest.SnapshotFetcher)) == []


async def test_an_order_cannot_be_sent_through_the_running_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
    monkeypatch.delenv("CONNECTOR_PAPER_TRADING", raising=False)
    connector, _ = build_connector(load_settings(FeedSettings))
    assert isinstance(connector, PollingConnector)
    wrapped = connector.wrapped

    for name in ("submit_order", "place_order", "cancel_order", "send_order", "new_order", "order"):
        assert not hasattr(wrapped, name) and not hasattr(connector, name)
    assert wrapped.get_health_status()["paper_trading"] is True


def test_the_connector_itself_refuses_to_trade() -> None:
    with pytest.raises(ValueError, match="market data only"):
        BinanceHFTConnector(BinanceSettings(), paper_trading=False)


# ---- as the factory builds it --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "exchange", "instrument"),
    [("spot", "binance", "ETHUSDT"), ("usdm", "binance_usdm", "ETHUSDT-PERP")],
)
def test_the_factory_builds_it_like_binance_ws(
    monkeypatch: pytest.MonkeyPatch, market: str, exchange: str, instrument: str
) -> None:
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
    monkeypatch.setenv("BINANCE_MARKET", market)
    monkeypatch.setenv("SYMBOLS", "ethusdt")

    connector, label = build_connector(load_settings(FeedSettings))
    monkeypatch.setenv("DATA_SOURCE", "binance_ws")
    native, _ = build_connector(load_settings(FeedSettings))

    assert label == "binance_hft" and isinstance(connector, PollingConnector)
    assert (connector.exchange, connector.instruments()) == (exchange, [instrument])
    assert (native.exchange, native.instruments()) == (exchange, [instrument])
    assert connector.reconnector.policy.max_attempts == 0  # Binance: never gives up by default


# ---- shutdown: what a wrapper still holds is published ------------------------------------------


class Holding(ScriptedConnector):
    """Received events that ``next_event`` has not returned yet when the feed stops."""

    def __init__(self, held: list[dict[str, object]]) -> None:
        super().__init__()
        self.held = held

    def pending(self) -> list[ConnectorEvent]:
        rest: list[ConnectorEvent] = list(self.held)
        self.held = []
        return rest


async def test_at_shutdown_the_feed_publishes_what_a_wrapper_still_holds(
    nats_url: str, nc: Client, unique: str
) -> None:
    trades = await collect(nc, subjects.trades(unique))
    held: list[dict[str, object]] = [
        {
            "type": "trade",
            "timestamp": RECV,
            "price": "1.50",
            "qty": "2",
            "side": "buy",
            "is_buyer_maker": False,
            "id": trade_id,
        }
        for trade_id in (1, 2)
    ]
    policy = ReconnectPolicy(initial_s=0.01, max_s=0.02, max_attempts=1)

    async with running_stream(Holding(held), nats_url, [unique], policy, "holding") as stream:
        await eventually(lambda: stream.connected)
    await eventually(lambda: len(trades) == 2)

    assert [(json.loads(m.data)["trade_id"], json.loads(m.data)["price"]) for m in trades] == [
        (1, "1.50"),
        (2, "1.50"),
    ]
