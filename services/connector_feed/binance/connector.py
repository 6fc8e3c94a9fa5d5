"""``BinanceConnector``: Binance spot or USD-M market data, pushed to the feed as it arrives.

It binds the parts, each testable alone: the link supervisor (``supervisor``: connections,
limits, make-before-break replacement, heartbeats), the decoder (``decoder``: parse -> route ->
de-duplicate or book -> events and states, one pass per frame), the snapshot syncer (``syncer``:
REST snapshots within the budget) and the recorder tap (``tap``). Each frame's events are
delivered to the feed from the socket's own reader task, so a socket is read no faster than the
feed publishes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.common.logging import get_logger
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.links import Link, plan, routes
from services.connector_feed.binance.parse import EXCHANGE, instrument_id
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.binance.supervisor import LinkSupervisor
from services.connector_feed.binance.syncer import SnapshotSyncer
from services.connector_feed.binance.tap import RecorderTap
from services.connector_feed.connector import ConnectorCounters, Delivered, FeedSink, NativeConnector

log = get_logger("binance")

WS_URL = {"spot": "wss://stream.binance.com:9443", "usdm": "wss://fstream.binance.com"}
REST_URL = {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"}
MAX_STREAMS = {"spot": 1024, "usdm": 200}
CHECK_STALE_EVERY_S = 0.1


class BinanceConnector(NativeConnector):
    def __init__(self, settings: BinanceSettings, policy: ReconnectPolicy | None = None) -> None:
        market = self.market = settings.binance_market
        self.exchange = EXCHANGE[market]
        self.venue_symbols = list(settings.symbols)
        self.symbols = [instrument_id(v, market) for v in self.venue_symbols]
        trade_stream = settings.binance_trade_stream or ("trade" if market == "spot" else "aggTrade")
        # Recording USD-M: @trade too (hftbacktest's converter reads trades only from it).
        record_trades = settings.record_dir is not None and market == "usdm" and trade_stream == "aggTrade"
        stale = {"trades": settings.binance_stale_trades_s, "depth": settings.binance_stale_depth_s}
        self.states = SymbolStates(self.exchange, self.symbols, ["trades", "depth"], stale)
        diff_books = settings.binance_depth_stream == "diff"
        if diff_books:
            self.states.resyncing.update(self.symbols)  # no book before its first snapshot
        self.syncer: SnapshotSyncer | None = None
        self.decoder = BinanceDecoder(
            market, self.venue_symbols, trade_stream, settings.binance_depth_stream, self.states, self._want
        )
        self.syncer = SnapshotSyncer(
            settings.binance_rest_url or REST_URL[market], market, settings.binance_depth_limit, self.decoder
        )
        self.tap = None if settings.record_dir is None else RecorderTap(settings.record_dir, self.exchange)
        self.syncer.tap = self.tap
        streams: list[str] = [trade_stream, "trade"] if record_trades else [trade_stream]
        self.supervisor = LinkSupervisor(
            (settings.binance_ws_url or WS_URL[market]).rstrip("/"),
            plan(
                routes(self.venue_symbols, market, streams, settings.binance_depth_stream),
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
        self._sink: FeedSink | None = None
        self._repaired: dict[tuple[str, str], float] = {}

    def instruments(self) -> list[str]:
        return list(self.symbols)

    async def run(self, sink: FeedSink) -> None:
        self._sink = sink
        assert self.syncer is not None
        async with asyncio.TaskGroup() as group:
            group.create_task(self.supervisor.run(), name="binance-links")
            group.create_task(self.syncer.run(sink), name="binance-snapshots")
            group.create_task(self._watch_streams(sink), name="binance-staleness")

    async def close(self) -> None:
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

    # ---- frames and connections ----------------------------------------------------------

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
        """A connection was lost (its symbols reconnecting, their books start over at once: a book
        can only be trusted while its stream flows) or is up again (resyncing until synced)."""
        symbols = sorted({instrument_id(s.split("@")[0].upper(), self.market) for s in streams})
        out: list[Delivered] = list(self.states.connection(symbols, up, reason))
        if not up and any("@depth" in s for s in streams):
            out.extend(self.decoder.resync(symbols, reason))
        if up and self.supervisor.is_connected():
            log.info(
                "connector_connected",
                connector=f"binance_{self.market}",
                symbols=self.symbols,
                exchange=self.exchange,
            )
        if out and self._sink is not None:
            await self._sink.deliver(out)

    def _want(self, symbol: str) -> None:
        if self.syncer is not None:
            self.syncer.want(symbol)

    async def _watch_streams(self, sink: FeedSink) -> None:
        """Stale streams: reported; a stale depth stream's connection is replaced (make-before-break),
        a stale trade stream is resubscribed; again while it stays silent, once per threshold."""
        while True:
            await asyncio.sleep(CHECK_STALE_EVERY_S)
            changes = self.states.check()
            for status in changes:
                log.warning(
                    "binance_stream_stale", symbol=status.symbol, stream=status.stream, reason=status.reason
                )
            if changes:
                await sink.deliver(list(changes))
            now = time.monotonic()
            for symbol, stream in list(self.states.stale):
                if now - self._repaired.get((symbol, stream), 0.0) < self.states.threshold_s(stream):
                    continue
                self._repaired[(symbol, stream)] = now
                await self._repair(symbol, stream)

    async def _repair(self, symbol: str, stream: str) -> None:
        venue = self.decoder.venue_of[symbol].lower()
        names = [s for link in self.supervisor.links for s in link.streams if s.startswith(f"{venue}@")]
        wanted = [s for s in names if ("@depth" in s) == (stream == "depth")]
        for name in wanted:
            link = self.supervisor.link_of(name)
            if link is None:
                continue
            if stream == "depth":
                self.supervisor.replace(link, f"stale {name}", ignore=frozenset(wanted))
            else:
                self.supervisor.resubscribe(name)

    # ---- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        decoder, supervisor = self.decoder, self.supervisor
        return {
            "connected": self.is_connected(),
            "subscribed_trades": list(self.symbols),
            "subscribed_depth": list(self.symbols),
            "event_counter": decoder.frames,
            "market": self.market,
            "symbols": self.states.states(),
            "reasons": {s: r for s, r in self.states.reasons.items() if self.states.state(s) != "live"},
            "connections": [
                {
                    "path": link.path,
                    "streams": len(link.streams),
                    "age_s": round(time.monotonic() - link.opened_at, 1),
                }
                for link in supervisor.links
            ],
            "rotations": supervisor.rotations,
            "forced_rotations": supervisor.forced_rotations,
            "reconnects": supervisor.reconnects,
            "half_open": supervisor.half_open,
            "resubscribes": supervisor.resubscribes,
            **decoder.health(),
            "rest": None if self.syncer is None else self.syncer.health(),
            "recorder": None if self.tap is None else self.tap.health(),
        }

    def counters(self) -> ConnectorCounters:
        decoder = self.decoder
        errors = {f"malformed_{reason}": n for reason, n in decoder.malformed.items()}
        errors["trade_gaps"] = sum(decoder.dedupe.gaps.values())
        errors["control_error"] = decoder.control.get("error", 0)
        rest = None if self.syncer is None else self.syncer.fetcher
        if rest is not None:
            errors.update(rest_rate_limited=rest.rate_limited, rest_errors=rest.errors)
        return ConnectorCounters(
            errors=errors,
            resyncs={s: b.stats.resyncs for s, b in decoder.books.items()},
            gaps={s: b.stats.gaps for s, b in decoder.books.items()},
            reconnects=self.supervisor.reconnects,
        )
