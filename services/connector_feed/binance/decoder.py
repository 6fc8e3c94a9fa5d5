"""``BinanceDecoder``: Binance frames and REST snapshots -> our events and state changes.

The seam recording and replay plug into, and everything the live connector does between the
socket and the feed, in one pass per frame and without I/O or a clock: parse (``parse``) ->
route -> de-duplicate trades (``dedupe``) or keep the local book (``book``) -> the events to
publish and the ``Status`` changes (``status``), in order. The live connector feeds it frames as
they arrive and snapshots as they are fetched; the replay feeds it the recorded lines; both
publish exactly what it returns.

A frame never raises: a bad one is counted by reason (``malformed``) and logged as a sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from schemas import Status, rules
from services.common.logging import LogSampler, get_logger
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.dedupe import TradeDedupe
from services.connector_feed.binance.parse import (
    EXCHANGE,
    BinanceParser,
    Control,
    Market,
    Unpublished,
    instrument_id,
)
from services.connector_feed.binance.parse_depth import DepthDiff, MalformedFrame, PartialBook, Snapshot
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.connector import Delivered
from services.connector_feed.events import Depth, Trade

log = get_logger("binance")

#: Frames longer than this are dropped unparsed (``oversized``); the connection stays up.
MAX_FRAME_CHARS = 1 << 20
#: Warnings per reason per minute on per-frame paths (the rest are counted, not logged).
LOG_LINES_PER_MINUTE = 10


class Decoded(NamedTuple):
    events: Sequence[Delivered]
    control: Control | None  # subscription replies, errors, serverShutdown: for the connection
    symbol: str | None  # the frame's instrument id, when it has one (recordings are per symbol)


class BinanceDecoder:
    def __init__(
        self,
        market: Market,
        venue_symbols: list[str],
        trade_stream: str,
        depth_stream: str,
        states: SymbolStates,
        want_snapshot: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.market = market
        self.exchange = EXCHANGE[market]
        self.parser = BinanceParser(market, trade_stream, venue_symbols)
        self.trade_stream = trade_stream
        self.symbols = [instrument_id(v, market) for v in venue_symbols]
        self.venue_of = dict(zip(self.symbols, venue_symbols, strict=True))
        self._symbol_of_stream = {v.lower(): s for s, v in self.venue_of.items()}  # "btcusdt" -> id
        self.states = states
        self._want_snapshot = want_snapshot
        self.dedupe = TradeDedupe()
        # One book per symbol for the process's life (its counters never reset), diff mode only.
        self.books = (
            {s: LocalBook(self.exchange, s, futures=market == "usdm") for s in self.symbols}
            if depth_stream == "diff"
            else {}
        )
        self.frames = 0
        self.malformed: dict[str, int] = {}
        self.control: dict[str, int] = {}
        self.unpublished: dict[str, int] = {}  # valid frames not published, by kind (Unpublished)
        self.refused: dict[str, str] = {}  # symbols the venue refused for good, with its reason
        self._sampler = LogSampler(LOG_LINES_PER_MINUTE)

    # ---- frames ------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes | memoryview, ts_recv: int) -> Decoded:
        """One frame's text (``str``, or the UTF-8 ``bytes`` of a recording) -> what to publish (in
        order), a control frame if it is one, and its symbol."""
        self.frames += 1
        try:
            if len(frame) > MAX_FRAME_CHARS:
                raise MalformedFrame("oversized", f"{len(frame)} characters (> {MAX_FRAME_CHARS})")
            item = self.parser.parse(frame, ts_recv)
        except MalformedFrame as error:
            self.count_malformed(error.reason, error.detail)
            return Decoded((), None, None)
        symbol: str | None = getattr(item, "symbol", None)
        try:
            return Decoded(self._route(item), item if type(item) is Control else None, symbol)
        except Exception as error:  # the per-frame boundary: a bug here costs one frame, not the socket
            self.count_malformed("internal_error", f"{type(error).__name__}: {rules.clip(str(error))}")
            return Decoded((), None, symbol)

    def _route(self, item: object) -> Sequence[Delivered]:
        kind = type(item)
        if kind is Trade:
            return self._trade(item)  # type: ignore[arg-type]
        if kind is DepthDiff:
            return self._diff(item)  # type: ignore[arg-type]
        if kind is PartialBook:
            book: PartialBook = item  # type: ignore[assignment]
            depth = Depth(
                self.exchange,
                book.symbol,
                book.bids,
                book.asks,
                True,
                None,
                book.last_update_id,
                None,
                book.ts_event,
                book.ts_recv,
            )
            status = self.states.seen(book.symbol, "depth", book.ts_recv)
            return (depth,) if status is None else (depth, status)
        if kind is Unpublished:  # a USD-M non-market print, or the recorded-only trade stream
            other: Unpublished = item  # type: ignore[assignment]
            self.unpublished[other.kind] = self.unpublished.get(other.kind, 0) + 1
            if other.trade_id is not None:
                self.dedupe.skip(other.symbol, other.trade_id)
            return ()
        control: Control = item  # type: ignore[assignment]
        self.control[control.kind] = self.control.get(control.kind, 0) + 1
        if self._sampler.allow(f"control_{control.kind}") is not None:
            log.info("binance_control_frame", kind=control.kind, detail=rules.preview(control.detail, 300))
        return ()

    def _trade(self, trade: Trade) -> Sequence[Delivered]:
        status = self.states.seen(trade.symbol, "trades", trade.ts_recv)
        if self.dedupe.admit(trade.symbol, trade.trade_id):
            return (trade,) if status is None else (status, trade)
        return () if status is None else (status,)

    def _diff(self, diff: DepthDiff) -> Sequence[Delivered]:
        """The book first, then the stream's state: a stale stream that resumes with a gap goes
        ``stale`` -> ``resyncing``, never through a ``live`` it is not."""
        symbol = diff.symbol
        book = self.books.get(symbol)
        if book is None:
            status = self.states.seen(symbol, "depth", diff.ts_recv)
            return () if status is None else (status,)
        was_synced = book.state == "synced"
        if was_synced:
            depth = book.on_diff(diff)
            if book.state == "synced":  # the hot path: one delta, usually no state change
                status = self.states.seen(symbol, "depth", diff.ts_recv)
                return depth if status is None else [*depth, status]
        else:
            overflows = book.stats.buffer_overflows
            depth = book.on_diff(diff)
            if book.stats.buffer_overflows != overflows:
                self._overflowed(book)
        out: list[Delivered] = [*depth]
        self._book_changed(book, was_synced, out)
        self._status(out, self.states.seen(symbol, "depth", diff.ts_recv))
        return out

    # ---- books -------------------------------------------------------------------------------

    def on_snapshot(self, symbol: str, snapshot: Snapshot) -> list[Delivered]:
        """A REST snapshot of ``symbol`` (fetched now, or read from a recording)."""
        book = self.books.get(symbol)
        if book is None:
            return []
        was_synced = book.state == "synced"
        out: list[Delivered] = list(book.on_snapshot(snapshot))
        self._book_changed(book, was_synced, out)
        return out

    def _book_changed(self, book: LocalBook, was_synced: bool, out: list[Delivered]) -> None:
        """Report a book's sync state changes (on a snapshot *or* on a diff) and ask for snapshots."""
        symbol = book.symbol
        if book.state == "synced" and not was_synced:
            log.info(
                "binance_book_synced",
                symbol=symbol,
                last_update_id=book.last_update_id,
                levels=len(book.book),
                resyncs=book.stats.resyncs,
            )
            self._status(out, self.states.book(symbol, synced=True, reason="book in sync"))
        elif was_synced and book.state != "synced":
            if self._sampler.allow("book_gap") is not None:
                log.warning("binance_book_gap", symbol=symbol, cause="sequence_gap", gaps=book.stats.gaps)
            reason = "sequence gap in the depth stream: resyncing"
            self._status(out, self.states.book(symbol, synced=False, reason=reason))
        if book.snapshot_wanted and symbol not in self.refused:
            self._want_snapshot(symbol)

    def _overflowed(self, book: LocalBook) -> None:
        """Ours, not the venue's: more diffs came while a snapshot was awaited than the book buffers,
        so it starts buffering over (and asks for a newer snapshot). Never a venue gap."""
        if self._sampler.allow("book_buffer_overflow") is not None:
            log.warning(
                "binance_book_buffer_overflow",
                symbol=book.symbol,
                cause="buffer_overflow",
                overflows=book.stats.buffer_overflows,
            )

    def connection(self, streams: list[str], up: bool, reason: str) -> list[Delivered]:
        """A connection carrying ``streams`` was lost (``up=False``: its symbols ``reconnecting``, and
        books carried on it start over at once: a book is trusted only while its stream flows) or is
        up again (``resyncing`` until synced)."""
        symbols = sorted({self._symbol_of_stream[s.split("@")[0]] for s in streams})
        out: list[Delivered] = list(self.states.connection(symbols, up, reason))
        if not up and any("@depth" in s for s in streams):
            out.extend(self.resync(symbols, reason))
        return out

    def resync(self, symbols: list[str], reason: str) -> list[Delivered]:
        """Start these books over (a new connection): each resyncs from a fresh snapshot."""
        out: list[Delivered] = []
        for symbol in symbols:
            book = self.books.get(symbol)
            if book is None or symbol in self.refused:
                continue
            book.resync()
            self._status(out, self.states.book(symbol, synced=False, reason=reason))
        return out

    def refuse(self, symbol: str, reason: str) -> list[Delivered]:
        """The venue refused ``symbol`` for good: ``down``, never asked for again."""
        self.refused[symbol] = reason
        out: list[Delivered] = []
        self._status(out, self.states.down(symbol, reason))
        return out

    @staticmethod
    def _status(out: list[Delivered], status: Status | None) -> None:
        if status is not None:
            out.append(status)

    # ---- accounting --------------------------------------------------------------------------

    def count_malformed(self, reason: str, detail: str) -> None:
        count = self.malformed[reason] = self.malformed.get(reason, 0) + 1
        suppressed = self._sampler.allow(reason)
        if suppressed is not None:
            log.warning(
                "binance_malformed_frame", reason=reason, detail=detail, count=count, suppressed=suppressed
            )

    def health(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "malformed": dict(self.malformed),
            "control": dict(self.control),
            "duplicates": self.dedupe.duplicates,
            "trade_gaps": dict(self.dedupe.gaps),
            "trades_missing": dict(self.dedupe.missing),  # trade ids those gaps skipped
            "unpublished": dict(self.unpublished),
            "refused": dict(self.refused),
            "books": {
                s: {
                    "state": b.state,
                    "last_update_id": b.last_update_id,
                    "resyncs": b.stats.resyncs,
                    "gaps": b.stats.gaps,
                    "refetches": b.stats.refetches,
                    "buffer_overflows": b.stats.buffer_overflows,
                    "stale_dropped": b.stats.stale_dropped,
                }
                for s, b in self.books.items()
            },
        }
