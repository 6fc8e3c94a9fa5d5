"""The fake Binance venue, its frame builders, scenario generator and fixtures behave as documented."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fake_binance import (
    MALFORMED_KINDS,
    STALE_DIFFS,
    BookSnapshot,
    ExpectedBook,
    FakeBinance,
    agg_trade,
    book_scenario,
    dumps,
    error_reply,
    futures_depth_diff,
    futures_partial_book,
    load_json,
    load_jsonl,
    load_lines,
    server_shutdown,
    spot_depth_diff,
    spot_partial_book,
    spot_trade,
    subscription_reply,
)
from tests.helpers import eventually

TS = 1_770_000_000_000


async def recv_json(ws: ClientConnection, within_s: float = 2.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), within_s))


async def nothing_within(ws: ClientConnection, seconds: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


# --- WebSocket ----------------------------------------------------------------------------


async def test_spot_combined_stream_wraps_frames_in_the_envelope() -> None:
    async with FakeBinance() as venue:
        assert venue.ws_url.startswith("ws://127.0.0.1:") and not venue.ws_url.endswith("/")
        url = f"{venue.ws_url}/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
        async with connect(url) as ws:
            await venue.wait_for_subscribers(["btcusdt@trade", "btcusdt@depth@100ms"])
            trade = spot_trade("BTCUSDT", 7, "50000.01000000", "0.10000000", True, TS)
            diff = spot_depth_diff("btcusdt", 10, 12, [["50000.00000000", "1.00000000"]], [], TS)
            assert await venue.send("btcusdt@trade", trade) == 1
            assert await venue.send("btcusdt@depth@100ms", diff) == 1
            assert await venue.send("ethusdt@trade", trade) == 0  # nobody subscribed

            assert await recv_json(ws) == {"stream": "btcusdt@trade", "data": trade}
            assert await recv_json(ws) == {"stream": "btcusdt@depth@100ms", "data": diff}
            assert await nothing_within(ws)

        (conn,) = venue.connections
        assert conn.path == "/stream"
        assert conn.streams == ["btcusdt@trade", "btcusdt@depth@100ms"]
        assert conn.combined and conn.frames_sent == 2
        await venue.wait_for_connections(1)
        for _ in range(100):
            if conn.closed:
                break
            await asyncio.sleep(0.01)
        assert conn.closed and conn.closed_at is not None and conn.closed_at >= conn.opened_at


async def test_raw_path_and_live_subscription_api() -> None:
    async with FakeBinance() as venue:
        async with connect(f"{venue.ws_url}/ws/btcusdt@trade") as ws:
            await venue.wait_for_subscribers(["btcusdt@trade"])
            trade = spot_trade("BTCUSDT", 1, "1.0", "2.0", False, TS)
            await venue.send("btcusdt@trade", trade)
            assert await recv_json(ws) == trade  # raw: no envelope

            await ws.send(dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}))
            assert await recv_json(ws) == subscription_reply(1)
            await ws.send(dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
            assert await recv_json(ws) == {"result": ["btcusdt@trade", "btcusdt@depth@100ms"], "id": 2}
            await ws.send(dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3}))
            assert await recv_json(ws) == subscription_reply(3)
            diff = spot_depth_diff("BTCUSDT", 1, 1, [], [["2.0", "1.0"]], TS)
            await venue.send("btcusdt@depth@100ms", diff)
            assert await recv_json(ws) == {"stream": "btcusdt@depth@100ms", "data": diff}

            await ws.send(dumps({"method": "SUBSCRIB", "params": [], "id": 4}))
            reply = await recv_json(ws)
            assert reply["code"] == 2 and reply["id"] == 4 and "unknown variant SUBSCRIB" in reply["msg"]
            await ws.send("{not json")
            assert (await recv_json(ws))["code"] == 3

            await ws.send(dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 5}))
            assert await recv_json(ws) == subscription_reply(5)
            assert await venue.send("btcusdt@trade", trade) == 0
        assert len(venue.connections[0].received) == 6


async def test_out_of_step_sockets_start_late_and_lag_each_their_own_way() -> None:
    url = "/stream?streams=btcusdt@trade"
    async with (
        FakeBinance(start_delay=(0.2, 0.4), lag=(0.05, 0.1), seed=3) as venue,
        connect(venue.ws_url + url) as old,
    ):
        await eventually(lambda: venue.streaming(["btcusdt@trade"]))
        async with connect(venue.ws_url + url) as new:
            await venue.wait_for_connections(2)
            first = spot_trade("BTCUSDT", 1, "1.0", "1.0", False, TS)
            assert await venue.send("btcusdt@trade", first) == 1  # the new one has not started
            assert await nothing_within(old, 0.04)  # late by its own latency, then delivered
            assert (await recv_json(old))["data"]["t"] == 1
            await eventually(lambda: all(c.delivers("btcusdt@trade") for c in venue.open_connections))
            await venue.send("btcusdt@trade", spot_trade("BTCUSDT", 2, "1.0", "1.0", False, TS))
            assert (await recv_json(old))["data"]["t"] == 2
            assert (await recv_json(new))["data"]["t"] == 2  # the new socket never sends trade 1
    starts = [c.starts_at - c.opened_at for c in venue.connections]
    lags = [c.lag_s for c in venue.connections]
    assert all(0.2 <= s <= 0.4 for s in starts) and all(0.05 <= lag <= 0.1 for lag in lags)
    assert len(set(lags)) == 2


async def test_a_muted_stream_sticks_on_the_open_sockets_only() -> None:
    async with FakeBinance() as venue:
        url = f"{venue.ws_url}/stream?streams=btcusdt@trade"
        async with connect(url) as stuck:
            await venue.wait_for_subscribers(["btcusdt@trade"])
            venue.mute("btcusdt@trade")
            async with connect(url) as fresh:
                await venue.wait_for_connections(2)
                assert await venue.send("btcusdt@trade", spot_trade("BTCUSDT", 1, "1", "1", False, TS)) == 1
                assert (await recv_json(fresh))["data"]["t"] == 1
                assert await nothing_within(stuck)


async def test_a_frozen_socket_stays_open_but_sends_and_answers_nothing() -> None:
    async with FakeBinance() as venue, connect(f"{venue.ws_url}/ws/btcusdt@trade", close_timeout=0.1) as ws:
        await venue.wait_for_subscribers(["btcusdt@trade"])
        (conn,) = venue.freeze()
        assert await venue.send("btcusdt@trade", spot_trade("BTCUSDT", 1, "1", "1", False, TS)) == 0
        pong = await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pong, 0.3)  # no pong: half-open, the TCP connection is still up
        assert conn.frozen and not conn.closed


async def test_a_deaf_venue_delivers_but_never_answers_a_close_frame() -> None:
    async with FakeBinance(deaf=True) as venue:
        ws = await connect(f"{venue.ws_url}/ws/btcusdt@trade", close_timeout=0.3)
        await venue.wait_for_subscribers(["btcusdt@trade"])
        await venue.send("btcusdt@trade", spot_trade("BTCUSDT", 1, "1", "1", False, TS))
        assert (await recv_json(ws))["t"] == 1
        started = asyncio.get_running_loop().time()
        await ws.close()
        waited = asyncio.get_running_loop().time() - started
        assert waited >= 0.3, "the close frame was answered"
        assert venue.connections[0].received == []


async def test_nested_error_shape_is_configurable() -> None:
    async with FakeBinance(nested_errors=True) as venue, connect(f"{venue.ws_url}/ws") as ws:
        await ws.send(dumps({"method": "NOPE", "id": 9}))
        reply = await recv_json(ws)
        assert reply["id"] == 9 and reply["error"]["code"] == 2


async def test_futures_routed_paths_and_the_silent_unrouted_path() -> None:
    async with FakeBinance(market="usdm") as venue:
        market = connect(venue.stream_url(["btcusdt@aggTrade"], "/market"))
        public = connect(venue.stream_url(["btcusdt@depth@100ms", "btcusdt@depth5@100ms"], "/public"))
        plain = connect(venue.stream_url(["btcusdt@aggTrade", "btcusdt@depth@100ms"]))
        async with market as m_ws, public as p_ws, plain as u_ws:
            await venue.wait_for_connections(3)
            await venue.wait_for_subscribers(["btcusdt@aggTrade", "btcusdt@depth@100ms"])
            by_path = {c.path: c for c in venue.connections}
            assert set(by_path) == {"/market/stream", "/public/stream", "/stream"}
            assert by_path["/stream"].route == "unrouted"
            assert by_path["/stream"].silenced_streams == ["btcusdt@aggTrade"]
            assert by_path["/market/stream"].silenced_streams == []

            trade = agg_trade("BTCUSDT", 5, "50000.10", "0.010", False, TS, 11, 12, futures=True)
            diff = futures_depth_diff("BTCUSDT", 100, 105, 99, [["50000.00", "1.000"]], [], TS)
            top = futures_partial_book("BTCUSDT", 100, 105, 99, [["50000.00", "1.000"]], [], TS)
            assert await venue.send("btcusdt@aggTrade", trade) == 1  # /market only
            assert await venue.send("btcusdt@depth@100ms", diff) == 2  # /public and unrouted
            assert await venue.send("btcusdt@depth5@100ms", top) == 1

            assert await recv_json(m_ws) == {"stream": "btcusdt@aggTrade", "data": trade}
            assert await nothing_within(m_ws)
            assert await recv_json(p_ws) == {"stream": "btcusdt@depth@100ms", "data": diff}
            assert await recv_json(p_ws) == {"stream": "btcusdt@depth5@100ms", "data": top}
            # The trade was sent first; the unrouted connection's first frame is the depth diff.
            assert await recv_json(u_ws) == {"stream": "btcusdt@depth@100ms", "data": diff}
            assert await nothing_within(u_ws)

            assert await venue.send_raw('{"result":null,"id":7}', path_prefix="/market") == 1
            assert await recv_json(m_ws) == {"result": None, "id": 7}
            assert await venue.send_raw(dumps(server_shutdown(TS, combined=True))) == 3


async def test_public_path_does_not_carry_trades() -> None:
    trade = agg_trade("BTCUSDT", 1, "1", "1", True, TS, 1, 1, futures=True)
    async with (
        FakeBinance(market="usdm") as venue,
        connect(venue.stream_url(["btcusdt@aggTrade"], "/public")) as ws,
    ):
        await venue.wait_for_subscribers(["btcusdt@aggTrade"])
        assert await venue.send("btcusdt@aggTrade", trade) == 0
        assert await nothing_within(ws, 0.1)


@pytest.mark.parametrize(
    ("market", "path"),
    [("spot", "/public/stream?streams=btcusdt@trade"), ("usdm", "/private/stream"), ("spot", "/nope")],
)
async def test_unknown_paths_are_refused(market: Any, path: str) -> None:
    async with FakeBinance(market=market) as venue:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(venue.ws_url + path):
                pass
        assert refused.value.response.status_code == 404
        assert venue.connections == []
        assert venue.rejected_handshakes == [(path, 404)]


async def test_too_many_streams_are_refused() -> None:
    async with FakeBinance(max_streams=2) as venue:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(venue.stream_url(["a@trade", "b@trade", "c@trade"])):
                pass
        assert refused.value.response.status_code == 400


@pytest.mark.parametrize("graceful", [False, True])
async def test_drop_connections_closes_the_client(graceful: bool) -> None:
    async with FakeBinance() as venue:
        async with connect(venue.stream_url(["btcusdt@trade"])) as ws:
            await venue.wait_for_subscribers(["btcusdt@trade"])
            assert await venue.drop_connections(graceful=graceful) == 1
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 2)
            expected = 1001 if graceful else 1006
            assert (closed.value.rcvd.code if closed.value.rcvd else 1006) == expected
        assert venue.connections[0].closed
        assert venue.open_connections == []
        # a reconnect is a new recorded connection
        async with connect(venue.stream_url(["btcusdt@trade"])):
            await venue.wait_for_connections(2)
            await venue.wait_for_subscribers(["btcusdt@trade"])
        assert len(venue.connections) == 2


async def test_wait_for_subscribers_times_out_with_the_missing_streams() -> None:
    async with FakeBinance() as venue:
        with pytest.raises(TimeoutError, match="btcusdt@trade"):
            await venue.wait_for_subscribers(["btcusdt@trade"], timeout=0.05)


# --- REST -------------------------------------------------------------------------------------


async def test_spot_snapshot_and_running_weight() -> None:
    bids = [["49999.99000000", "2.00000000"], ["50000.00000000", "1.00000000"]]  # unsorted on purpose
    asks = [["50000.01000000", "0.50000000"]]
    async with FakeBinance() as venue, aiohttp.ClientSession() as http:
        venue.set_snapshot("BTCUSDT", 1027024, bids, asks)
        url = f"{venue.rest_url}/api/v3/depth"
        weights = []
        for limit in (1000, 100, 5000, 1):
            async with http.get(url, params={"symbol": "BTCUSDT", "limit": str(limit)}) as resp:
                assert resp.status == 200
                body = await resp.json()
                weights.append(int(resp.headers["X-MBX-USED-WEIGHT-1M"]))
            if limit == 1000:
                assert body == {
                    "lastUpdateId": 1027024,
                    "bids": [["50000.00000000", "1.00000000"], ["49999.99000000", "2.00000000"]],
                    "asks": asks,
                }
        assert body["bids"] == [["50000.00000000", "1.00000000"]]  # limit=1 cuts the levels
        assert weights == [50, 55, 305, 310]
        assert [(r.symbol, r.limit) for r in venue.snapshot_requests] == [
            ("BTCUSDT", 1000),
            ("BTCUSDT", 100),
            ("BTCUSDT", 5000),
            ("BTCUSDT", 1),
        ]
        times = [r.at for r in venue.snapshot_requests]
        assert times == sorted(times)

        async with http.get(url, params={"symbol": "NOPEUSDT", "limit": "1000"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {"code": -1121, "msg": "Invalid symbol."}
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "360"
        async with http.get(f"{venue.rest_url}/fapi/v1/depth", params={"symbol": "BTCUSDT"}) as resp:
            assert resp.status == 404  # a spot venue has no futures endpoint


async def test_futures_snapshot_has_event_and_transaction_time() -> None:
    async with FakeBinance(market="usdm") as venue, aiohttp.ClientSession() as http:
        venue.set_snapshot(
            "btcusdt", 8123, [["50000.00", "1.000"]], [["50000.10", "2.000"]], event_time_ms=TS + 5
        )
        url = f"{venue.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
        async with http.get(url) as resp:
            body = await resp.json()
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "20"
        assert list(body) == ["lastUpdateId", "E", "T", "bids", "asks"]
        assert body["lastUpdateId"] == 8123 and body["E"] == TS + 5
        assert isinstance(body["T"], int) and body["T"] > TS
        async with http.get(f"{venue.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=50") as resp:
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "22"
        async with http.get(f"{venue.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=500") as resp:
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "32"


async def test_reject_next_answers_429_with_retry_after_then_200() -> None:
    async with FakeBinance() as venue, aiohttp.ClientSession() as http:
        venue.set_snapshot("BTCUSDT", 1, [["1.00000000", "1.00000000"]], [["2.00000000", "1.00000000"]])
        venue.reject_next(429, retry_after=2)
        url = f"{venue.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000"
        async with http.get(url) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "2"
            assert await resp.json() == {"code": -1003, "msg": "Too many requests"}
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "50"
        async with http.get(url) as resp:
            assert resp.status == 200
            assert "Retry-After" not in resp.headers
        venue.reject_next(418, retry_after=120, times=2)
        for _ in range(2):
            async with http.get(url) as resp:
                assert resp.status == 418 and resp.headers["Retry-After"] == "120"
                assert (await resp.json())["code"] == -1003
        async with http.get(url) as resp:
            assert resp.status == 200
        assert len(venue.snapshot_requests) == 5


async def test_held_snapshots_answer_with_the_snapshot_current_at_release() -> None:
    async with FakeBinance() as venue, aiohttp.ClientSession() as http:
        venue.set_snapshot("BTCUSDT", 1, [], [])
        venue.hold_snapshots()
        request = asyncio.create_task(http.get(f"{venue.rest_url}/api/v3/depth?symbol=BTCUSDT"))
        await venue.wait_for_snapshot_requests(1)
        assert not request.done()
        venue.set_snapshot("BTCUSDT", 2, [], [])
        venue.release_snapshots()
        async with await request as resp:
            assert (await resp.json())["lastUpdateId"] == 2
        assert venue.snapshot_requests[0].limit == 100  # spot default


# --- builders -------------------------------------------------------------------------------------


def test_frame_builders_follow_the_documented_fields() -> None:
    trade = spot_trade("btcusdt", 12345, "0.001", "100", True, TS)
    assert trade == {
        "e": "trade",
        "E": TS,
        "s": "BTCUSDT",
        "t": 12345,
        "p": "0.001",
        "q": "100",
        "T": TS,
        "m": True,
        "M": True,
    }
    spot_agg = agg_trade("BNBBTC", 12345, "0.001", "100", True, TS, 100, 105)
    assert list(spot_agg) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    assert "M" not in agg_trade("BTCUSDT", 1, "1", "1", True, TS, 1, 1, futures=True)
    assert list(spot_depth_diff("X", 1, 2, [], [], TS)) == ["e", "E", "s", "U", "u", "b", "a"]
    fut = futures_depth_diff("X", 157, 160, 149, [["0.0024", "10"]], [["0.0026", "100"]], TS)
    assert list(fut) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    assert (fut["U"], fut["u"], fut["pu"], fut["b"]) == (157, 160, 149, [["0.0024", "10"]])
    assert spot_partial_book(160, [["0.0024", "10"]], []) == {
        "lastUpdateId": 160,
        "bids": [["0.0024", "10"]],
        "asks": [],
    }
    assert futures_partial_book("x", 1, 2, 0, [], [], TS)["e"] == "depthUpdate"
    assert subscription_reply(1) == {"result": None, "id": 1}
    assert error_reply(2, "Invalid request", 3) == {"code": 2, "msg": "Invalid request", "id": 3}
    assert error_reply(2, "x", 3, nested=True) == {"error": {"code": 2, "msg": "x"}, "id": 3}
    assert server_shutdown(TS, combined=False) == {"e": "serverShutdown", "E": TS}
    assert server_shutdown(TS, combined=True) == {
        "stream": "!serverShutdown",
        "data": {"e": "serverShutdown", "E": TS},
    }


# --- book_scenario -----------------------------------------------------------------------------


def replay(market: str, snapshot: BookSnapshot, diffs: list[dict[str, Any]]) -> ExpectedBook:
    """A second, deliberately plain implementation of Binance's procedure (string keys)."""
    bids = dict(snapshot.bids)
    asks = dict(snapshot.asks)
    last = snapshot.last_update_id
    if market == "spot":
        live = [d for d in diffs if d["u"] > last]
        assert live[0]["U"] <= last + 1 <= live[0]["u"]
        for prev, cur in itertools.pairwise(live):
            assert cur["U"] == prev["u"] + 1
    else:
        live = [d for d in diffs if d["u"] >= last]
        assert live[0]["U"] <= last <= live[0]["u"]
        for prev, cur in itertools.pairwise(live):
            assert cur["pu"] == prev["u"]
    for diff in live:
        for book, levels in ((bids, diff["b"]), (asks, diff["a"])):
            for price, qty in levels:
                if qty == "0.00000000":
                    book.pop(price, None)
                else:
                    book[price] = qty
    return ExpectedBook(live[-1]["u"], bids, asks)


@pytest.mark.parametrize("market", ["spot", "usdm"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_book_scenario_is_self_consistent(market: Any, seed: int) -> None:
    snapshot, diffs, expected = book_scenario("BTCUSDT", market, n_diffs=300, seed=seed)
    assert expected is not None
    assert book_scenario("BTCUSDT", market, n_diffs=300, seed=seed) == (snapshot, diffs, expected)

    # snapshot: ~1000 levels per side, 8-decimal prices around 50000, uncrossed
    assert 950 <= len(snapshot.bids) <= 1050 and 950 <= len(snapshot.asks) <= 1050
    bid_px = [Decimal(p) for p, _ in snapshot.bids]
    ask_px = [Decimal(p) for p, _ in snapshot.asks]
    assert bid_px == sorted(bid_px, reverse=True) and ask_px == sorted(ask_px)
    assert bid_px[0] < ask_px[0]
    assert 49000 < bid_px[0] < 51000
    assert all(len(p.split(".")[1]) == 8 and len(q.split(".")[1]) == 8 for p, q in snapshot.bids)

    # diffs straddle the snapshot as documented
    last = snapshot.last_update_id
    assert len(diffs) == 300
    if market == "spot":
        assert all(d["u"] <= last for d in diffs[:STALE_DIFFS])
        assert diffs[STALE_DIFFS]["U"] <= last + 1 <= diffs[STALE_DIFFS]["u"]
        assert all(1 <= d["u"] - d["U"] + 1 <= 5 for d in diffs)
        assert all(cur["U"] == prev["u"] + 1 for prev, cur in itertools.pairwise(diffs))
        assert all("pu" not in d and "T" not in d for d in diffs)
    else:
        assert all(d["u"] < last for d in diffs[:STALE_DIFFS])
        assert diffs[STALE_DIFFS]["U"] <= last <= diffs[STALE_DIFFS]["u"]
        assert all(cur["pu"] == prev["u"] for prev, cur in itertools.pairwise(diffs))
        assert len({cur["U"] - prev["u"] for prev, cur in itertools.pairwise(diffs)}) > 5
    levels = [lv for d in diffs for lv in (*d["b"], *d["a"])]
    assert all(1 <= len(d["b"]) <= 20 and 1 <= len(d["a"]) <= 20 for d in diffs)
    deletions = sum(q == "0.00000000" for _, q in levels) / len(levels)
    assert 0.15 < deletions < 0.35
    assert all(d["s"] == "BTCUSDT" and d["e"] == "depthUpdate" for d in diffs)

    # an independent replay agrees, and the book never crosses
    assert replay(market, snapshot, diffs) == expected
    assert max(map(Decimal, expected.bids)) < min(map(Decimal, expected.asks))
    assert "0.00000000" not in expected.bids.values()


def test_book_scenario_deletes_levels_absent_from_the_book() -> None:
    snapshot, diffs, _ = book_scenario("ETHUSDT", "spot", n_diffs=200, seed=7)
    known = {p for p, _ in snapshot.bids} | {p for p, _ in snapshot.asks}
    absent = 0
    for diff in diffs[STALE_DIFFS:]:
        for price, qty in (*diff["b"], *diff["a"]):
            if qty == "0.00000000" and price not in known:
                absent += 1
            known.add(price)
    assert absent > 0


@pytest.mark.parametrize("market", ["spot", "usdm"])
@pytest.mark.parametrize("gap_at", [STALE_DIFFS, 50])
def test_book_scenario_gap_leaves_a_hole_in_the_ids(market: Any, gap_at: int) -> None:
    full_snapshot, full, _ = book_scenario("BTCUSDT", market, n_diffs=100, seed=5)
    snapshot, diffs, expected = book_scenario("BTCUSDT", market, n_diffs=100, seed=5, gap_at=gap_at)
    assert expected is None
    assert snapshot == full_snapshot
    assert diffs == full[:gap_at] + full[gap_at + 1 :]
    before, after = diffs[gap_at - 1], diffs[gap_at]
    if market == "spot":
        assert after["U"] > before["u"] + 1
    else:
        assert after["pu"] != before["u"]
    with pytest.raises(AssertionError):
        replay(market, snapshot, diffs)


def test_book_scenario_rejects_an_undetectable_gap() -> None:
    with pytest.raises(ValueError, match="gap_at"):
        book_scenario("BTCUSDT", "spot", n_diffs=10, seed=1, gap_at=1)
    with pytest.raises(ValueError, match="gap_at"):
        book_scenario("BTCUSDT", "spot", n_diffs=10, seed=1, gap_at=9)


def test_book_scenario_small_books_and_short_runs() -> None:
    for market in ("spot", "usdm"):
        for n in (1, 2, 5):
            snapshot, diffs, expected = book_scenario("BTCUSDT", market, n_diffs=n, seed=n, levels=3)
            assert expected is not None and replay(market, snapshot, diffs) == expected


async def test_scenario_can_be_served_by_the_venue() -> None:
    snapshot, diffs, _ = book_scenario("BTCUSDT", "usdm", n_diffs=20, seed=11, levels=50)
    async with FakeBinance(market="usdm") as venue, aiohttp.ClientSession() as http:
        venue.load_snapshot(snapshot)
        async with http.get(f"{venue.rest_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000") as resp:
            body = await resp.json()
        assert body["lastUpdateId"] == snapshot.last_update_id
        assert body["bids"] == snapshot.bids and body["asks"] == snapshot.asks
        async with connect(venue.stream_url(["btcusdt@depth@100ms"], "/public")) as ws:
            await venue.wait_for_subscribers(["btcusdt@depth@100ms"])
            for diff in diffs:
                await venue.send("btcusdt@depth@100ms", diff)
            received = [(await recv_json(ws))["data"] for _ in diffs]
        assert received == diffs


# --- fixtures ---------------------------------------------------------------------------------------


def apply_fixture(snapshot: dict[str, Any], frames: list[dict[str, Any]], spot: bool) -> ExpectedBook:
    bids = {Decimal(p): q for p, q in snapshot["bids"]}
    asks = {Decimal(p): q for p, q in snapshot["asks"]}
    last = snapshot["lastUpdateId"]
    local: int | None = None
    for frame in frames:
        d = frame["data"]
        if local is None:
            if (d["u"] <= last) if spot else (d["u"] < last):
                continue
            assert d["U"] <= last + (1 if spot else 0) <= d["u"]
        else:
            assert d["U"] == local + 1 if spot else d["pu"] == local
        for book, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    book.pop(Decimal(p), None)
                else:
                    book[Decimal(p)] = q
        local = d["u"]
    assert local is not None
    return ExpectedBook(local, {str(p): q for p, q in bids.items()}, {str(p): q for p, q in asks.items()})


def test_depth_fixtures_are_consistent_with_their_snapshots() -> None:
    spot = apply_fixture(load_json("spot_depth_snapshot.json"), load_jsonl("spot_depth.jsonl"), spot=True)
    assert spot == ExpectedBook(
        51234567916,
        {
            "50000.01000000": "0.50000000",
            "49999.99000000": "0.25000000",
            "49998.00000000": "0.80000000",
            "49997.00000000": "0.10000000",
            "49995.00000000": "3.10000000",
        },
        {
            "50000.02000000": "0.35000000",
            "50002.00000000": "4.00000000",
            "50003.00000000": "1.00000000",
            "50005.00000000": "2.50000000",
        },
    )
    futures_snapshot = load_json("futures_depth_snapshot.json")
    assert list(futures_snapshot) == ["lastUpdateId", "E", "T", "bids", "asks"]
    futures = apply_fixture(futures_snapshot, load_jsonl("futures_depth.jsonl"), spot=False)
    assert futures == ExpectedBook(
        8123456789160,
        {
            "50000.10": "0.400",
            "49999.90": "2.000",
            "49999.80": "1.100",
            "49998.00": "4.500",
            "49995.00": "12.000",
        },
        {
            "50000.20": "2.600",
            "50000.50": "1.000",
            "50002.00": "8.000",
            "50003.00": "1.500",
            "50005.00": "20.000",
        },
    )
    for frame in load_jsonl("futures_depth.jsonl"):
        assert frame["stream"] == "btcusdt@depth@100ms"
        assert list(frame["data"]) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]


def test_trade_fixtures_have_contiguous_ids_per_symbol() -> None:
    trades = load_jsonl("spot_trades.jsonl")
    by_symbol: dict[str, list[int]] = {}
    for frame in trades:
        data = frame["data"]
        assert frame["stream"] == f"{data['s'].lower()}@trade"
        assert list(data) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
        assert data["E"] >= data["T"] and Decimal(data["q"]) > 0
        by_symbol.setdefault(data["s"], []).append(data["t"])
    for ids in by_symbol.values():
        assert ids == list(range(ids[0], ids[0] + len(ids)))

    aggs = [f["data"] for f in load_jsonl("futures_aggtrades.jsonl")]
    assert all("M" not in a and a["e"] == "aggTrade" for a in aggs)
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    assert all(cur["f"] == prev["l"] + 1 for prev, cur in itertools.pairwise(aggs))
    assert all(a["f"] <= a["l"] for a in aggs)


def test_control_and_malformed_fixtures() -> None:
    control = load_jsonl("control_frames.jsonl")
    assert control[0] == subscription_reply(1)
    assert {"e": "serverShutdown", "E": 1770000005000} in control
    assert {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1770000005000}} in control
    assert any("error" in c for c in control) and any("code" in c for c in control)

    lines = load_lines("malformed_frames.txt")
    assert len(lines) == len(MALFORMED_KINDS) == 10
    kinds = dict(zip(MALFORMED_KINDS, lines, strict=True))
    for kind in ("not-json", "truncated-json"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(kinds[kind])
    assert isinstance(orjson.loads(kinds["json-array"]), list)
    assert "data" not in orjson.loads(kinds["missing-data"])
    assert "e" not in orjson.loads(kinds["data-without-e"])["data"]
    assert "p" not in orjson.loads(kinds["trade-missing-p"])["data"]
    assert orjson.loads(kinds["trade-p-nan"])["data"]["p"] == "NaN"
    assert Decimal(orjson.loads(kinds["trade-negative-qty"])["data"]["q"]) < 0
    depth = orjson.loads(kinds["depth-U-greater-than-u"])["data"]
    assert depth["U"] > depth["u"]
    assert orjson.loads(kinds["unknown-event-type"])["data"]["e"] not in ("trade", "aggTrade", "depthUpdate")
