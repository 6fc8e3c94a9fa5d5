"""``BinanceConnector``: Binance spot or USD-M market data, pushed to the feed as it arrives.

It binds the parts, each testable alone: the link supervisor (``supervisor``: connections,
limits, make-before-break replacement, heartbeats), the decoder (``decoder``: parse -> route ->
de-duplicate or book -> events and states, one pass per frame), the snapshot syncer (``syncer``:
REST snapshots within the budget), the stale-stream watch (``watch``) and the recorder tap
(``tap``). Each frame's events are handed to the feed in the socket's own callback, so a socket is
read no faster than the feed publishes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.logging import get_logger
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance import health
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.links import Link, plan, routes
from services.connector_feed.binance.parse import EXCHANGE, instrument_id
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.binance.supervisor import LinkSupervisor
from services.connector_feed.binance.syncer import SnapshotSyncer
from services.connector_feed.binance.tap import RecorderTap
from services.connector_feed.binance.watch import StreamWatch
from services.connector_feed.connector import ConnectorCounters, ConnectorGaveUp, FeedSink, NativeConnector

log = get_logger("binance")

WS_URL = {"spot": "wss://stream.binance.com:9443", "usdm": "wss://fstream.binance.com"}
REST_URL = {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"}
MAX_STREAMS = {"spot": 1024, "usdm": 200}


class BinanceConnector(NativeConnector):
    def __init__(self, settings: BinanceSettings, policy: ReconnectPolicy | None = None) -> None:
        market = self.market = settings.binance_market
        self.exchange = EXCHANGE[market]
        venue_symbols = list(settings.symbols)
        self.symbols = [instrument_id(v, market) for v in venue_symbols]
        trade_stream = settings.binance_trade_stream or ("trade" if market == "spot" else "aggTrade")
        stale = {"trades": settings.binance_stale_trades_s, "depth": settings.binance_stale_depth_s}
        self.states = SymbolStates(self.exchange, self.symbols, ["trades", "depth"], stale)
        if settings.binance_depth_stream == "diff":
            self.states.resyncing.update(self.symbols)  # no book before its first snapshot
        depth_stream = settings.binance_depth_stream
        self.decoder = BinanceDecoder(
            market, venue_symbols, trade_stream, depth_stream, self.states, self._want
        )
        rest_url = settings.binance_rest_url or REST_URL[market]
        self.syncer = SnapshotSyncer(rest_url, market, settings.binance_depth_limit, self.decoder)
        self.tap = None if settings.record_dir is None else RecorderTap(settings.record_dir, self.exchange)
        self.syncer.tap = self.tap
        # Recording USD-M: @trade too (hftbacktest's converter reads trades only from it).
        record_trades = self.tap is not None and market == "usdm" and trade_stream == "aggTrade"
        streams: list[str] = [trade_stream, "trade"] if record_trades else [trade_stream]
        self.supervisor = LinkSupervisor(
            (settings.binance_ws_url or WS_URL[market]).rstrip("/"),
            plan(
                routes(venue_symbols, market, streams, depth_stream),
                settings.binance_max_streams_per_connection or MAX_STREAMS[market],
            ),
            self._on_frame,
            self._on_link,
            self._room,
            policy or ReconnectPolicy(max_attempts=0, jitter=True),
            settings.binance_rotate_after_s,
            settings.binance_half_open_s,
            settings.binance_ping_timeout_s,
        )
        self.watch = StreamWatch(self.states, self.supervisor, self.decoder.venue_of)
        self._sink: FeedSink | None = None

    def instruments(self) -> list[str]:
        return list(self.symbols)

    async def run(self, sink: FeedSink) -> None:
        self._sink = sink
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.supervisor.run(), name="binance-links")
                group.create_task(self.syncer.run(sink), name="binance-snapshots")
                group.create_task(self.watch.run(sink), name="binance-staleness")
        except* ConnectorGaveUp as gave_up:  # final: every symbol down, then the feed sees it unwrapped
            error = gave_up.exceptions[0]
            downs = [self.states.down(symbol, str(error)) for symbol in self.symbols]
            # put, not deliver: published by the feed's own task (Python 3.11's TaskGroup can leave
            # this task's cancel count raised after a child failed, which a drain here would obey).
            sink.put([status for status in downs if status is not None])
            raise error from None

    async def close(self) -> None:
        """Every connection closed at once (short timeouts), then every recording finished."""
        await self.supervisor.close()
        if self.tap is not None:
            await self.tap.close()

    def is_connected(self) -> bool:
        return self.supervisor.is_connected()

    def reconnection_attempts(self) -> int:
        return self.supervisor.reconnection_attempts()

    def last_error(self) -> str | None:
        return None if self.is_connected() else self.supervisor.last_error

    def book(self, symbol: str) -> LocalBook | None:
        return self.decoder.books.get(symbol)

    def health(self) -> dict[str, Any]:
        return health.health(self.decoder, self.supervisor, self.syncer, self.watch, self.tap)

    def counters(self) -> ConnectorCounters:
        return health.counters(self.decoder, self.supervisor, self.syncer)

    # ---- the parts' callbacks ------------------------------------------------------------

    def _on_frame(self, frame: bytes | memoryview, ts_recv: int, link: Link, binary: bool) -> bool:
        """One frame, in the socket's callback: decoded, recorded, handed to the feed. False when the
        feed is full (the link stops reading until ``_room``)."""
        tap = self.tap
        if binary:  # Binance sends text frames
            self.decoder.count_malformed("binary_frame", f"{len(frame)} bytes (Binance sends text frames)")
            if tap is not None:
                tap.frame(None, ts_recv, bytes(frame))
            return True
        decoded = self.decoder.on_frame(frame, ts_recv)
        if tap is not None:
            tap.frame(self.decoder.venue_of.get(decoded.symbol or ""), ts_recv, bytes(frame))
        if decoded.control is not None and decoded.control.kind == "server_shutdown":
            self.supervisor.replace(link, "serverShutdown")
        if decoded.events and self._sink is not None:
            return self._sink.put(decoded.events)
        return True

    async def _room(self) -> None:
        if self._sink is not None:
            await self._sink.room()

    async def _on_link(self, streams: list[str], up: bool, reason: str) -> None:
        out = self.decoder.connection(streams, up, reason)
        if up and self.supervisor.is_connected():
            log.info("connector_connected", connector=f"binance_{self.market}", symbols=self.symbols)
        if out and self._sink is not None:
            await self._sink.deliver(out)

    def _want(self, symbol: str) -> None:
        self.syncer.want(symbol)
