"""``BinanceConnector``: websockets transport + the pure parser + a local order book per symbol.

Spot: one combined-stream connection (``/stream?streams=...``). USD-M futures: Binance's routed
paths - ``/public`` for depth, ``/market`` for trades (the unrouted URL silently delivers no
trades). Frames are parsed where they arrive; books resync per symbol; REST snapshots come from
one budget-aware fetcher. The feed reads the results through ``next_event``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.common.logging import get_logger
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.parse import (
    EXCHANGE,
    BinanceParser,
    Control,
    DepthDiff,
    MalformedFrame,
    PartialBook,
    instrument_id,
)
from services.connector_feed.binance.rest import SnapshotError, SnapshotFetcher
from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.settings import FeedSettings

log = get_logger("binance")

WS_URL = {"spot": "wss://stream.binance.com:9443", "usdm": "wss://fstream.binance.com"}
REST_URL = {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"}
#: Events parsed but not yet read by the feed; beyond it, trades are dropped (counted) and a
#: symbol's book is resynced rather than left with a hole.
MAX_PENDING = 100_000
WAIT_FOR_DATA_S = 0.05
#: Pause before fetching again a snapshot that was refused as older than the buffered events.
REFETCH_DELAY_S = 0.5


class BinanceConnector(ConnectorWrapper):
    def __init__(self, settings: FeedSettings) -> None:
        self.market = settings.binance_market
        self.exchange = EXCHANGE[self.market]
        self.ws_url = (settings.binance_ws_url or WS_URL[self.market]).rstrip("/")
        self.rest_url = settings.binance_rest_url or REST_URL[self.market]
        self.trade_stream = settings.binance_trade_stream or (
            "trade" if self.market == "spot" else "aggTrade"
        )
        self.depth_stream = settings.binance_depth_stream
        self.depth_limit = settings.binance_depth_limit
        self.venue_symbols = [s.upper() for s in settings.symbols]
        self.parser = BinanceParser(self.market, self.trade_stream)
        self.books: dict[str, LocalBook] = {}
        self._venue_of: dict[str, str] = {}
        self._pending: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._connections: dict[str, ClientConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshots: asyncio.Queue[str] = asyncio.Queue()
        self._snapshot_queued: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self.fetcher: SnapshotFetcher | None = None
        self._last_trade_id: dict[str, int] = {}
        self.subscribed_trades: set[str] = set()
        self.subscribed_depth: set[str] = set()
        self.frames = 0
        self.malformed: dict[str, int] = {}
        self.control: dict[str, int] = {}
        self.trade_gaps = 0
        self.pending_dropped = 0

    # ---- ConnectorWrapper --------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection(s) for every symbol in SYMBOLS; all books start (re)syncing."""
        await self.disconnect()
        self._session = aiohttp.ClientSession()
        self.fetcher = SnapshotFetcher(self.rest_url, self.market, self.depth_limit, self._session)
        self.books = {}
        for venue in self.venue_symbols:
            symbol = instrument_id(venue, self.market)
            self._venue_of[symbol] = venue
            if self.depth_stream == "diff":
                self.books[symbol] = LocalBook(self.exchange, symbol, futures=self.market == "usdm")
        for path, streams in self._routes().items():
            url = f"{self.ws_url}{path}?streams={'/'.join(streams)}"
            self._connections[path] = await asyncio.wait_for(
                connect(url, max_size=2**24, open_timeout=10), 15
            )
            log.info("binance_connected", path=path, streams=len(streams), url=url[:120])
        for path, connection in self._connections.items():
            self._spawn(self._read(path, connection), f"binance-read{path}")
        if self.books:
            self._spawn(self._snapshot_worker(), "binance-snapshots")

    async def disconnect(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._snapshot_queued.clear()
        self._snapshots = asyncio.Queue()

    async def subscribe_trades(self, symbol: str) -> None:
        self._check_symbol(symbol)
        self.subscribed_trades.add(symbol)

    async def subscribe_depth(self, symbol: str) -> None:
        self._check_symbol(symbol)
        self.subscribed_depth.add(symbol)

    async def next_event(self) -> Event | None:
        if not self._pending:
            self._ready.clear()
            try:  # wake as soon as data arrives, instead of the feed's poll interval
                await asyncio.wait_for(self._ready.wait(), WAIT_FOR_DATA_S)
            except TimeoutError:
                return None
        return self._pending.popleft() if self._pending else None

    async def is_connected(self) -> bool:
        return (
            bool(self._connections)
            and all(c.state.name == "OPEN" for c in self._connections.values())
            and all(not t.done() for t in self._tasks)
        )

    def is_resyncing(self) -> bool:
        return any(book.state != "synced" for book in self.books.values())

    def get_health_status(self) -> dict[str, Any]:
        fetcher = self.fetcher
        return {
            "connected": bool(self._connections),
            "market": self.market,
            "connections": sorted(self._connections),
            "subscribed_trades": sorted(self.subscribed_trades),
            "subscribed_depth": sorted(self.subscribed_depth),
            "frames": self.frames,
            "malformed": dict(self.malformed),
            "control": dict(self.control),
            "trade_gaps": self.trade_gaps,
            "pending": len(self._pending),
            "books": {
                s: {
                    "state": b.state,
                    "last_update_id": b.last_update_id,
                    "resyncs": b.stats.resyncs,
                    "gaps": b.stats.gaps,
                    "refetches": b.stats.refetches,
                }
                for s, b in self.books.items()
            },
            "rest": None
            if fetcher is None
            else {
                "requests": fetcher.requests,
                "used_weight": fetcher.used_weight,
                "rate_limited": fetcher.rate_limited,
                "errors": fetcher.errors,
            },
        }

    # ---- internals -------------------------------------------------------------------------

    def _check_symbol(self, symbol: str) -> None:
        if symbol.upper() not in self.venue_symbols:
            raise ValueError(f"Binance connector was started for {self.venue_symbols}, not {symbol!r}")

    def _routes(self) -> dict[str, list[str]]:
        """Combined streams per connection path (routed paths for USD-M futures)."""
        trades = [f"{s.lower()}@{self.trade_stream}" for s in self.venue_symbols]
        if self.depth_stream == "diff":
            depth = [f"{s.lower()}@depth@100ms" for s in self.venue_symbols]
        else:
            depth = [
                f"{s.lower()}@depth{self.depth_stream.removeprefix('partial')}@100ms"
                for s in self.venue_symbols
            ]
        if self.market == "spot":
            return {"/stream": trades + depth}
        return {"/market/stream": trades, "/public/stream": depth}

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)

    async def _read(self, path: str, connection: ClientConnection) -> None:
        try:
            async for frame in connection:
                self.on_frame(frame, time.time_ns())
        except ConnectionClosed as closed:
            log.warning(
                "binance_connection_closed", path=path, code=closed.rcvd.code if closed.rcvd else None
            )

    def on_frame(self, frame: str | bytes, ts_recv: int) -> None:
        """Parse one frame and route it (the message handler: decode -> parse -> emit)."""
        self.frames += 1
        try:
            item = self.parser.parse(frame, ts_recv)
        except MalformedFrame as error:
            count = self.malformed[error.reason] = self.malformed.get(error.reason, 0) + 1
            if count <= 10 or count % 1000 == 0:
                log.warning("binance_malformed_frame", reason=error.reason, detail=error.detail, count=count)
            return
        if type(item) is Trade:
            self._on_trade(item)
        elif type(item) is DepthDiff:
            self._on_diff(item)
        elif type(item) is PartialBook:
            self._emit(
                Depth(
                    self.exchange,
                    item.symbol,
                    item.bids,
                    item.asks,
                    True,
                    None,
                    item.last_update_id,
                    None,
                    item.ts_event,
                    item.ts_recv,
                )
            )
        else:
            assert isinstance(item, Control)
            self.control[item.kind] = self.control.get(item.kind, 0) + 1
            log.info("binance_control_frame", kind=item.kind, detail=item.detail)

    def _on_trade(self, trade: Trade) -> None:
        if self.trade_stream == "trade":  # raw trades: ids are contiguous per symbol
            last = self._last_trade_id.get(trade.symbol)
            if last is not None and trade.trade_id != last + 1 and trade.trade_id > last:
                self.trade_gaps += 1
                log.warning("binance_trade_gap", symbol=trade.symbol, after=last, got=trade.trade_id)
            self._last_trade_id[trade.symbol] = max(trade.trade_id, last or 0)
        self._emit(trade)

    def _on_diff(self, diff: DepthDiff) -> None:
        book = self.books.get(diff.symbol)
        if book is None:
            return
        was_synced = book.state == "synced"
        for event in book.on_diff(diff):
            self._emit(event)
        if was_synced and book.state != "synced":
            log.warning("binance_book_gap", symbol=diff.symbol, gaps=book.stats.gaps)
        if book.snapshot_wanted:
            self._want_snapshot(diff.symbol)

    def _want_snapshot(self, symbol: str) -> None:
        if symbol not in self._snapshot_queued:
            self._snapshot_queued.add(symbol)
            self._snapshots.put_nowait(symbol)

    async def _snapshot_worker(self) -> None:
        fetcher = self.fetcher
        assert fetcher is not None
        while True:
            symbol = await self._snapshots.get()
            book = self.books[symbol]
            try:
                snapshot = await fetcher.fetch(self._venue_of[symbol])
            except SnapshotError as error:
                log.error("binance_snapshot_refused", symbol=symbol, error=str(error))
                await asyncio.sleep(5)
                self._snapshot_queued.discard(symbol)
                self._want_snapshot(symbol)
                continue
            self._snapshot_queued.discard(symbol)
            events = book.on_snapshot(snapshot)
            for event in events:
                self._emit(event)
            if events:
                log.info(
                    "binance_book_synced",
                    symbol=symbol,
                    last_update_id=book.last_update_id,
                    levels=len(book.book),
                    resyncs=book.stats.resyncs,
                )
            if book.snapshot_wanted:  # refused as too old: ask again, but do not hammer the venue
                await asyncio.sleep(REFETCH_DELAY_S)
                self._want_snapshot(symbol)

    def _emit(self, event: Event) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.pending_dropped += 1
            if type(event) is Depth and event.symbol in self.books:
                self.books[event.symbol].resync()  # never a silent hole in a book
                self._want_snapshot(event.symbol)
            return
        self._pending.append(event)
        self._ready.set()
