"""``BinanceConnector``: websockets transport + the pure parser + a local order book per symbol.

Spot: one combined-stream connection (``/stream?streams=...``). USD-M futures: Binance's routed
paths - ``/public`` for depth, ``/market`` for trades (the unrouted URL silently delivers no
trades). Frames are parsed where they arrive; books resync per symbol; REST snapshots come from
one budget-aware fetcher. Connections are spread within Binance's stream limits and replaced
make-before-break (``links``); silent streams and resyncs are reported as ``Status`` events
(``status``). The feed reads the results through ``next_event``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import aiohttp
from websockets.exceptions import ConnectionClosed

from schemas import Status, rules
from services.common.logging import LogSampler, get_logger
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.links import Link, open_link, plan, routes
from services.connector_feed.binance.parse import (
    EXCHANGE,
    BinanceParser,
    Control,
    DepthDiff,
    MalformedFrame,
    PartialBook,
    Snapshot,
    instrument_id,
)
from services.connector_feed.binance.rest import SnapshotError, SnapshotFetcher
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.events import Depth, Event, Trade
from services.connector_feed.recorder import CONNECTION_FILE, Recorder
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
MAX_STREAMS = {"spot": 1024, "usdm": 200}
SUPERVISE_EVERY_S = 0.1
#: Trade ids remembered per symbol to drop the duplicates two sockets deliver while rotating.
RECENT_TRADE_IDS = 4096
#: After a failed rotation, wait this long before trying again.
ROTATION_RETRY_S = 5.0
#: Frames longer than this are dropped unparsed (``oversized``) and the connection stays up; the
#: websocket itself accepts up to MAX_WS_FRAME so such a frame never costs the socket.
MAX_FRAME_CHARS = 1 << 20
#: Warnings per reason per minute on per-frame paths (the rest are counted, not logged).
LOG_LINES_PER_MINUTE = 10


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
        self.max_streams = settings.binance_max_streams_per_connection or MAX_STREAMS[self.market]
        self.rotate_after_s = settings.binance_rotate_after_s
        self.ping_timeout_s = settings.binance_ping_timeout_s
        self.stale_after_s = {
            "trades": settings.binance_stale_trades_s,
            "depth": settings.binance_stale_depth_s,
        }
        self.venue_symbols = [s.upper() for s in settings.symbols]
        self.symbols = [instrument_id(v, self.market) for v in self.venue_symbols]
        self._venue_of = dict(zip(self.symbols, self.venue_symbols, strict=True))
        self.parser = BinanceParser(self.market, self.trade_stream, self.venue_symbols)
        self.books: dict[str, LocalBook] = {}
        self.states = SymbolStates(self.exchange, self.symbols, ["trades", "depth"], self.stale_after_s)
        self._pending: deque[Event | Status] = deque()
        self._ready = asyncio.Event()
        self.links: list[Link] = []
        self._tasks: set[asyncio.Task[None]] = set()  # short-lived (rotations)
        self._workers: list[asyncio.Task[None]] = []  # for the connection's life: one ending = trouble
        self._snapshots: asyncio.Queue[str] = asyncio.Queue()
        self._snapshot_queued: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self.fetcher: SnapshotFetcher | None = None
        self._last_trade_id: dict[str, int] = {}
        self._recent_ids: dict[str, set[int]] = {}  # per symbol, the last RECENT_TRADE_IDS ids
        self._recent_order: dict[str, deque[int]] = {}
        self.log_sampler = LogSampler(LOG_LINES_PER_MINUTE)
        #: Symbols the venue refused for good (e.g. HTTP 400 "Invalid symbol."), with its reason.
        self.refused: dict[str, str] = {}
        self.subscribed_trades: set[str] = set()
        self.subscribed_depth: set[str] = set()
        self.frames = 0
        self.malformed: dict[str, int] = {}
        self.control: dict[str, int] = {}
        self.trade_gaps = 0
        self.duplicates = 0
        self.rotations = 0
        self.pending_dropped = 0
        self.record_dir = settings.record_dir
        self.recorder: Recorder | None = None

    # ---- ConnectorWrapper --------------------------------------------------------------------

    def prepare(self) -> None:
        """Fresh books and states for every symbol (on connect; and by the replay connector)."""
        self.books = {}
        self.states = SymbolStates(self.exchange, self.symbols, ["trades", "depth"], self.stale_after_s)
        for symbol in self.symbols:
            if symbol in self.refused:  # refused for good: stays down across reconnects
                self._status(self.states.down(symbol, self.refused[symbol]))
                continue
            if self.depth_stream == "diff":
                self.books[symbol] = LocalBook(self.exchange, symbol, futures=self.market == "usdm")
                self._status(self.states.book(symbol, synced=False, reason="connected: building the book"))

    async def connect(self) -> None:
        """Open the connections for every symbol in SYMBOLS; every book starts (re)syncing."""
        await self.disconnect()
        self._session = aiohttp.ClientSession()
        self.fetcher = SnapshotFetcher(self.rest_url, self.market, self.depth_limit, self._session)
        if self.record_dir is not None:
            self.recorder = Recorder(self.record_dir, self.exchange)
        self.prepare()
        for path, streams in plan(
            routes(self.venue_symbols, self.market, self.trade_stream, self.depth_stream), self.max_streams
        ):
            link = await open_link(self.ws_url, path, streams, self.ping_timeout_s)
            self._start(link)
            log.info("binance_connected", path=path, streams=len(streams), connections=len(self.links))
        if self.books:
            self._workers.append(asyncio.create_task(self._snapshot_worker(), name="binance-snapshots"))
        self._workers.append(asyncio.create_task(self._supervise(), name="binance-supervisor"))

    async def disconnect(self) -> None:
        tasks = [*self._tasks, *self._workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._workers.clear()
        for link in self.links:
            await link.ws.close()
        self.links.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.recorder is not None:  # writes what is queued and closes every file properly
            await asyncio.to_thread(self.recorder.close)
            self.recorder = None
        self._snapshot_queued.clear()
        self._snapshots = asyncio.Queue()

    async def subscribe_trades(self, symbol: str) -> None:
        self._check_symbol(symbol)
        self.subscribed_trades.add(symbol)

    async def subscribe_depth(self, symbol: str) -> None:
        self._check_symbol(symbol)
        self.subscribed_depth.add(symbol)

    async def next_event(self) -> Event | Status | None:
        if not self._pending:
            self._ready.clear()
            try:  # wake as soon as data arrives, instead of the feed's poll interval
                await asyncio.wait_for(self._ready.wait(), WAIT_FOR_DATA_S)
            except TimeoutError:
                return None
        return self._pending.popleft() if self._pending else None

    def pop_pending(self) -> Event | Status | None:
        """The next parsed event without waiting (the replay connector drives the parser itself)."""
        return self._pending.popleft() if self._pending else None

    async def is_connected(self) -> bool:
        return (
            bool(self.links)
            and all(
                link.is_open and link.reader is not None and not link.reader.done() for link in self.links
            )
            and all(not task.done() for task in self._workers)  # a crashed worker forces a reconnect
        )

    def is_resyncing(self) -> bool:
        return any(state != "live" for state in self.states.states().values())

    def published_symbols(self) -> list[str]:
        return list(self.symbols)  # BTCUSDT-PERP for USD-M

    def book_stats(self) -> dict[str, dict[str, int]]:
        return {s: {"resyncs": b.stats.resyncs, "gaps": b.stats.gaps} for s, b in self.books.items()}

    def error_counts(self) -> dict[str, int]:
        fetcher = self.fetcher
        counts = {f"malformed_{reason}": n for reason, n in self.malformed.items()}
        counts.update(
            trade_gaps=self.trade_gaps,
            pending_dropped=self.pending_dropped,
            control_error=self.control.get("error", 0),
        )
        if fetcher is not None:
            counts.update(rest_rate_limited=fetcher.rate_limited, rest_errors=fetcher.errors)
        return counts

    def get_health_status(self) -> dict[str, Any]:
        fetcher = self.fetcher
        return {
            "connected": bool(self.links),
            "market": self.market,
            "connections": [
                {
                    "path": link.path,
                    "streams": len(link.streams),
                    "age_s": round(time.monotonic() - link.opened_at, 1),
                }
                for link in self.links
            ],
            "rotations": self.rotations,
            "symbols": self.states.states(),
            "subscribed_trades": sorted(self.subscribed_trades),
            "subscribed_depth": sorted(self.subscribed_depth),
            "frames": self.frames,
            "malformed": dict(self.malformed),
            "control": dict(self.control),
            "trade_gaps": self.trade_gaps,
            "pending_dropped": self.pending_dropped,
            "recorder": None
            if self.recorder is None
            else {
                "written": self.recorder.written,
                "dropped": self.recorder.dropped,
                "errors": self.recorder.errors,
            },
            "duplicates": self.duplicates,
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

    # ---- connections -------------------------------------------------------------------------

    def _check_symbol(self, symbol: str) -> None:
        if symbol.upper() not in self.venue_symbols:
            raise ValueError(f"Binance connector was started for {self.venue_symbols}, not {symbol!r}")

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(self, link: Link) -> None:
        self.links.append(link)
        link.reader = asyncio.create_task(self._read(link), name=f"binance-read{link.path}")

    async def _read(self, link: Link) -> None:
        try:
            async for frame in link.ws:
                self.on_frame(frame, time.time_ns(), link)
        except ConnectionClosed as closed:
            if link in self.links:  # not one we retired on purpose
                log.warning(
                    "binance_connection_closed",
                    path=link.path,
                    code=closed.rcvd.code if closed.rcvd else None,
                )

    async def rotate(self, link: Link, reason: str) -> None:
        """Make-before-break: open the replacement, then retire ``link``."""
        if link not in self.links or link.retiring:
            return
        link.retiring = True
        try:
            fresh = await open_link(self.ws_url, link.path, link.streams, self.ping_timeout_s)
        except Exception as error:  # supervisor boundary: any failure leaves the old connection in place
            link.retiring = False
            link.opened_at = time.monotonic() - self.rotate_after_s + ROTATION_RETRY_S  # try again later
            log.warning("binance_rotation_failed", path=link.path, reason=reason, error=repr(error))
            return  # the old connection stays; the next supervision pass tries again
        self._start(fresh)
        self.links.remove(link)
        if link.reader is not None:
            link.reader.cancel()
        await link.ws.close()
        self.rotations += 1
        log.info("binance_rotated", path=link.path, reason=reason, streams=len(link.streams))

    async def _supervise(self) -> None:
        """Rotation before the 24 h cut, and stale-stream detection."""
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            try:
                self._supervise_once()
            except Exception as error:  # supervisor boundary: count, log a sample, keep supervising
                self._malformed("supervisor_error", f"{type(error).__name__}: {rules.clip(str(error))}")

    def _supervise_once(self) -> None:
        for status in self.states.check():
            self._status(status)
            log.warning(
                "binance_stream_stale", symbol=status.symbol, stream=status.stream, reason=status.reason
            )
        now = time.monotonic()
        for link in list(self.links):
            if now - link.opened_at >= self.rotate_after_s and not link.retiring:
                self._spawn(self.rotate(link, "age"), "binance-rotate")

    # ---- frames ------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes, ts_recv: int, link: Link | None = None) -> None:
        """Parse one frame and route it (the message handler: decode -> parse -> emit).

        Never raises: a bad frame of any shape is counted by reason, logged as a sample, and the
        connection stays up; valid frames before and after it are unaffected.
        """
        self.frames += 1
        try:
            if type(frame) is not str:
                raise MalformedFrame("binary_frame", f"{len(frame)} bytes (Binance sends text frames)")
            if len(frame) > MAX_FRAME_CHARS:
                raise MalformedFrame("oversized", f"{len(frame)} characters (> {MAX_FRAME_CHARS})")
            item = self.parser.parse(frame, ts_recv)
        except MalformedFrame as error:
            if self.recorder is not None:
                self.recorder.write(CONNECTION_FILE, ts_recv, frame)
            self._malformed(error.reason, error.detail)
            return
        if self.recorder is not None:
            symbol = getattr(item, "symbol", None)
            self.recorder.write(
                self._venue_of.get(symbol, CONNECTION_FILE) if symbol else CONNECTION_FILE, ts_recv, frame
            )
        try:
            self._route(item, link)
        except Exception as error:  # the per-frame boundary: a bug here costs one frame, not the socket
            self._malformed("internal_error", f"{type(error).__name__}: {rules.clip(str(error))}")

    def _malformed(self, reason: str, detail: str) -> None:
        count = self.malformed[reason] = self.malformed.get(reason, 0) + 1
        suppressed = self.log_sampler.allow(reason)
        if suppressed is not None:
            log.warning(
                "binance_malformed_frame", reason=reason, detail=detail, count=count, suppressed=suppressed
            )

    def _route(self, item: object, link: Link | None) -> None:
        if type(item) is Trade:
            self._on_trade(item)
        elif type(item) is DepthDiff:
            self._on_diff(item)
        elif type(item) is PartialBook:
            self._status(self.states.seen(item.symbol, "depth", item.ts_recv))
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
            if self.log_sampler.allow(f"control_{item.kind}") is not None:
                log.info("binance_control_frame", kind=item.kind, detail=rules.preview(item.detail, 300))
            if item.kind == "server_shutdown" and link is not None:
                self._spawn(self.rotate(link, "serverShutdown"), "binance-rotate")

    def _on_trade(self, trade: Trade) -> None:
        symbol = trade.symbol
        self._status(self.states.seen(symbol, "trades", trade.ts_recv))
        last = self._last_trade_id.get(symbol)
        if last is not None and trade.trade_id <= last:
            # Older than the newest: the same trade from the other socket while rotating - or, if the
            # new socket ran ahead, one the old socket is only now delivering (not seen: keep it).
            seen = self._recent_ids.get(symbol)
            if seen is not None and trade.trade_id in seen:
                self.duplicates += 1
                return
        elif last is not None and self.trade_stream == "trade" and trade.trade_id != last + 1:
            self.trade_gaps += 1  # raw trade ids are contiguous per symbol
            suppressed = self.log_sampler.allow("trade_gap")
            if suppressed is not None:
                log.warning(
                    "binance_trade_gap", symbol=symbol, after=last, got=trade.trade_id, suppressed=suppressed
                )
        self._remember(symbol, trade.trade_id)
        self._emit(trade)

    def _remember(self, symbol: str, trade_id: int) -> None:
        seen = self._recent_ids.get(symbol)
        if seen is None:
            seen = self._recent_ids[symbol] = set()
            self._recent_order[symbol] = deque()
        order = self._recent_order[symbol]
        seen.add(trade_id)
        order.append(trade_id)
        if len(order) > RECENT_TRADE_IDS:
            seen.discard(order.popleft())
        last = self._last_trade_id.get(symbol)
        if last is None or trade_id > last:
            self._last_trade_id[symbol] = trade_id

    def _on_diff(self, diff: DepthDiff) -> None:
        self._status(self.states.seen(diff.symbol, "depth", diff.ts_recv))
        book = self.books.get(diff.symbol)
        if book is None:
            return
        was_synced = book.state == "synced"
        for event in book.on_diff(diff):
            self._emit(event)
        if was_synced and book.state != "synced":
            suppressed = self.log_sampler.allow("book_gap")
            if suppressed is not None:
                log.warning(
                    "binance_book_gap", symbol=diff.symbol, gaps=book.stats.gaps, suppressed=suppressed
                )
            self._status(self.states.book(diff.symbol, synced=False, reason="sequence gap: resyncing"))
        if book.snapshot_wanted:
            self._want_snapshot(diff.symbol)

    def _want_snapshot(self, symbol: str) -> None:
        if symbol not in self._snapshot_queued and symbol not in self.refused:
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
            except SnapshotError as error:  # the venue refused the symbol for good: stop asking
                self._snapshot_queued.discard(symbol)
                self.refused[symbol] = f"venue refused {self._venue_of[symbol]}: {error}"
                log.error("binance_symbol_refused", symbol=symbol, error=str(error))
                self._status(self.states.down(symbol, self.refused[symbol]))
                continue
            self._snapshot_queued.discard(symbol)
            received = time.time_ns()
            if self.recorder is not None:
                self.recorder.write(self._venue_of[symbol], received, snapshot.raw)
            self.apply_snapshot(symbol, snapshot)
            if book.snapshot_wanted:  # refused as too old: ask again, but do not hammer the venue
                await asyncio.sleep(REFETCH_DELAY_S)
                self._want_snapshot(symbol)

    def apply_snapshot(self, symbol: str, snapshot: Snapshot) -> None:
        """A REST snapshot for ``symbol`` (fetched now, or read from a recording)."""
        book = self.books.get(symbol)
        if book is None:
            return
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
            self._status(self.states.book(symbol, synced=True, reason="book in sync"))

    def _status(self, status: Status | None) -> None:
        if status is not None:
            self._pending.append(status)
            self._ready.set()

    def _emit(self, event: Event) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.pending_dropped += 1
            if type(event) is Depth and event.symbol in self.books:
                self.books[event.symbol].resync()  # never a silent hole in a book
                self._status(self.states.book(event.symbol, synced=False, reason="events dropped: resyncing"))
                self._want_snapshot(event.symbol)
            return
        self._pending.append(event)
        self._ready.set()
