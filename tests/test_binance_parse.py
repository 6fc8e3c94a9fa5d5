from __future__ import annotations

import orjson
import pytest

from services.connector_feed.binance.parse import (
    BinanceParser,
    Control,
    DepthDiff,
    MalformedFrame,
    PartialBook,
    Unpublished,
)
from services.connector_feed.events import Trade
from tests.fake_binance import futures_trade

RECV = 1_700_000_000_123_456_789


def _combined(stream: str, data: object) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def test_spot_trade_keeps_binance_strings_and_the_aggressor_side() -> None:
    frame = _combined(
        "btcusdt@trade",
        {
            "e": "trade",
            "E": 1672515782136,
            "s": "BTCUSDT",
            "t": 12345,
            "p": "0.00100000",
            "q": "100.00000000",
            "T": 1672515782134,
            "m": True,
            "M": True,
        },
    )

    trade = BinanceParser("spot").parse(frame, RECV)

    assert isinstance(trade, Trade)
    assert (trade.exchange, trade.symbol, trade.trade_id) == ("binance", "BTCUSDT", 12345)
    assert (trade.price, trade.qty) == ("0.00100000", "100.00000000")
    assert (trade.side, trade.is_buyer_maker) == ("sell", True)  # buyer is maker -> the taker sold
    assert (trade.ts_event, trade.ts_recv) == (1672515782134 * 1_000_000, RECV)
    assert trade.to_contract().to_json().count(b'"price":"0.00100000"') == 1


def test_futures_aggtrade_is_published_as_perp() -> None:
    frame = _combined(
        "btcusdt@aggTrade",
        {
            "e": "aggTrade",
            "E": 1,
            "s": "BTCUSDT",
            "a": 5,
            "p": "65000.10",
            "q": "0.002",
            "f": 100,
            "l": 105,
            "T": 1700000000000,
            "m": False,
        },
    )

    trade = BinanceParser("usdm").parse(frame, RECV)

    assert isinstance(trade, Trade)
    assert (trade.exchange, trade.symbol, trade.trade_id, trade.side) == (
        "binance_usdm",
        "BTCUSDT-PERP",
        5,
        "buy",
    )


@pytest.mark.parametrize(
    ("print_type", "expected"),
    [
        ("MARKET", None),
        ("INSURANCE_FUND", "INSURANCE_FUND"),
        ("ADL", "ADL"),
        ("NA", "NA"),
        ("SOMETHING_NEW", "other"),
        (None, "missing"),
    ],
)
@pytest.mark.parametrize("wrapped", [True, False], ids=["combined", "raw"])
def test_usdm_trade_stream_publishes_only_market_prints(
    print_type: str | None, expected: str | None, wrapped: bool
) -> None:
    data = futures_trade("BTCUSDT", 7, "65000.10", "0.002", False, 1700000000000, "MARKET")
    if print_type is None:
        del data["X"]
    else:
        data["X"] = print_type
    frame = _combined("btcusdt@trade", data) if wrapped else orjson.dumps(data)

    parsed = BinanceParser("usdm", "trade").parse(frame, RECV)

    if expected is None:
        assert isinstance(parsed, Trade) and (parsed.symbol, parsed.trade_id) == ("BTCUSDT-PERP", 7)
    else:
        assert parsed == Unpublished("BTCUSDT-PERP", expected, 7)


def test_usdm_trade_stream_beside_aggtrade_is_recorded_not_published() -> None:
    frame = _combined("btcusdt@trade", futures_trade("BTCUSDT", 7, "1.0", "1.0", False, 1700000000000))

    assert BinanceParser("usdm").parse(frame, RECV) == Unpublished("BTCUSDT-PERP", "trade_stream")


def test_depth_diffs_spot_and_futures() -> None:
    spot = BinanceParser("spot").parse(
        _combined(
            "bnbbtc@depth@100ms",
            {
                "e": "depthUpdate",
                "E": 1672515782136,
                "s": "BNBBTC",
                "U": 157,
                "u": 160,
                "b": [["0.0024", "10"]],
                "a": [["0.0026", "0.00000000"]],
            },
        ),
        RECV,
    )
    futures = BinanceParser("usdm").parse(
        _combined(
            "btcusdt@depth@100ms",
            {
                "e": "depthUpdate",
                "E": 123456789,
                "T": 123456788,
                "s": "BTCUSDT",
                "U": 157,
                "u": 160,
                "pu": 149,
                "b": [],
                "a": [["65000.1", "3"]],
            },
        ),
        RECV,
    )

    assert spot == DepthDiff(
        "BNBBTC",
        157,
        160,
        None,
        [["0.0024", "10"]],  # the venue's own level arrays, kept (no copy per level)
        [["0.0026", "0.00000000"]],
        1672515782136 * 1_000_000,
        RECV,
    )
    assert isinstance(futures, DepthDiff)
    assert (futures.symbol, futures.prev_last_update_id, futures.ts_event) == (
        "BTCUSDT-PERP",
        149,
        123456788 * 10**6,
    )


def test_partial_books() -> None:
    spot = BinanceParser("spot").parse(
        _combined(
            "btcusdt@depth5@100ms", {"lastUpdateId": 160, "bids": [["1.0", "2"]], "asks": [["1.1", "3"]]}
        ),
        RECV,
    )
    futures = BinanceParser("usdm").parse(
        _combined(
            "btcusdt@depth5@100ms",
            {
                "e": "depthUpdate",
                "E": 2,
                "T": 1,
                "s": "BTCUSDT",
                "U": 1,
                "u": 9,
                "pu": 0,
                "b": [["1.0", "2"]],
                "a": [],
            },
        ),
        RECV,
    )

    assert spot == PartialBook("BTCUSDT", 160, [["1.0", "2"]], [["1.1", "3"]], RECV, RECV)
    assert (
        isinstance(futures, PartialBook) and futures.last_update_id == 9 and futures.symbol == "BTCUSDT-PERP"
    )


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b'{"result":null,"id":1}', "subscription_reply"),
        (b'{"code":2,"msg":"Invalid request","id":3}', "error"),
        (b'{"error":{"code":2,"msg":"Invalid request"},"id":3}', "error"),
        (b'{"e":"serverShutdown","E":1770123456789}', "server_shutdown"),
        (b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}', "server_shutdown"),
    ],
)
def test_control_frames(frame: bytes, kind: str) -> None:
    parsed = BinanceParser("spot").parse(frame, RECV)

    assert isinstance(parsed, Control) and parsed.kind == kind


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"not json", "not_json"),
        (b'{"stream":"btcusdt@trade","data":{"e":"trade"', "not_json"),
        (b"[1,2]", "not_an_object"),
        (b'{"stream":"btcusdt@trade"}', "bad_envelope"),
        (b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT"}}', "unknown_event"),
        (b'{"stream":"x@trade","data":{"e":"trade","s":"X","t":1,"q":"1","T":1,"m":true}}', "missing_field"),
        (
            b'{"stream":"x@trade","data":{"e":"trade","s":"X","t":1,"p":"NaN","q":"1","T":1,"m":true}}',
            "bad_price",
        ),
        (
            b'{"stream":"x@trade","data":{"e":"trade","s":"X","t":1,"p":"1","q":"-1","T":1,"m":true}}',
            "bad_qty",
        ),
        (
            b'{"stream":"x@trade","data":{"e":"trade","s":"X","t":1,"p":"1","q":"1","T":1,"m":"yes"}}',
            "wrong_type",
        ),
        (
            b'{"stream":"x@depth","data":{"e":"depthUpdate","E":1,"s":"X","U":9,"u":3,"b":[],"a":[]}}',
            "bad_update_ids",
        ),
        (
            b'{"stream":"x@depth","data":{"e":"depthUpdate","E":1,"s":"X","U":1,"u":3,"b":[["1"]],"a":[]}}',
            "bad_levels",
        ),
        (b'{"stream":"x@kline_1m","data":{"e":"kline"}}', "unknown_event"),
    ],
)
def test_malformed_frames_have_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(MalformedFrame) as raised:
        BinanceParser("spot").parse(frame, RECV)

    assert raised.value.reason == reason
