"""``ReplayConnector`` (CONNECTOR_NAME=replay): recorded Binance frames through the live decoder.

Reads ``<exchange>/<SYMBOL>_<YYYYMMDD>.gz`` recordings (``REPLAY_PATH``: one file or a folder of
them; lines ``<recv_ts_ns> <raw text>``), merges them in receipt-time order and hands every line
to the same ``BinanceDecoder`` the live connector uses - websocket frames with their original
receipt time (kept as ``ts_recv``), REST snapshot lines as snapshots - so it publishes exactly
what the live connector published. Events go to the feed in batches (all the lines read in one
step). ``REPLAY_SPEED`` multiplies the recorded pace (0 = as fast as possible). A truncated or
corrupt file is reported with its position and the replay carries on with the other files.
Progress (lines, recorded time, share of the files' bytes read) is in health and in a
``replay_progress`` log line every ``REPLAY_PROGRESS_S``; ``hftfeed replay`` draws it as a bar.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import sys
import time
import zlib
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.logging import get_logger
from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.parse import EXCHANGE, Market, instrument_id
from services.connector_feed.binance.parse_depth import MalformedFrame, parse_rest_snapshot
from services.connector_feed.binance.status import SymbolStates
from services.connector_feed.connector import ConnectorCounters, Delivered, FeedSink, NativeConnector
from services.connector_feed.recorder import CONNECTION_FILE

log = get_logger("replay")

MARKET_OF = {exchange: market for market, exchange in EXCHANGE.items()}
#: Lines decoded per step at most before their events are delivered together (32: the events are
#: still warm in the cache when the feed publishes them; 256 measured ~0.3 µs a line slower).
LINES_PER_STEP = 32
#: Compressed bytes read at a time (~0.5 MB of lines, ~1,000 frames).
READ_BUFFER = 1 << 16
#: The GIL switch interval while a replay reads (``run``): short enough that the inflating thread
#: gets the GIL back promptly between the blocks it inflates.
INFLATE_SWITCH_INTERVAL_S = 0.0005
_GZIP_WBITS = zlib.MAX_WBITS | 16  # a gzip header and trailer (CRC and length checked by zlib)
_SNAPSHOT_PREFIX = b'{"lastUpdateId"'

Line = tuple[int, int, int, str, bytes]  # recv_ns, file index, line number, venue symbol, text


class ReplaySettings(BaseSettings):
    """The replay's own settings section."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    replay_path: Path | None = Field(
        default=None, description="CONNECTOR_NAME=replay: a recording, or a folder"
    )
    replay_speed: float = Field(
        default=1.0, ge=0, description="replay pace: 1 = as recorded, 10 = 10x, 0 = flat out"
    )
    replay_progress_s: float = Field(
        default=5.0, gt=0, description="a replay_progress log line (lines, position, percent) this often"
    )


def recordings(path: Path) -> list[Path]:
    if not path.exists():
        raise ValueError(f"REPLAY_PATH={path}: no such file or folder")
    files = sorted(path.rglob("*.gz")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"REPLAY_PATH={path}: no .gz recordings there")
    return files


class _Position:
    """How far into its compressed file a reader is, for progress: the compressed span of the
    chunk being decoded, shared out over its lines (a chunk is read ahead of its lines)."""

    __slots__ = ("count", "end", "first", "line", "start")

    def __init__(self) -> None:
        self.start = self.end = self.first = self.line = 0
        self.count = 1

    def chunk(self, lines_before: int, count: int, start: int, end: int) -> None:
        self.first, self.count, self.start, self.end = lines_before, max(count, 1), start, end

    def compressed_bytes(self) -> float:
        done = min(max(self.line - self.first, 0), self.count) / self.count
        return self.start + (self.end - self.start) * done


class Inflater:
    """A gzip file (one member or several, as the recorder appends on a restart) -> its lines, a
    chunk at a time. Truncated or corrupt data raises as ``gzip`` would (``EOFError``,
    ``zlib.error``, ``gzip.BadGzipFile``); a CRC or length mismatch is zlib's ``zlib.error``."""

    def __init__(self, compressed: IO[bytes], chunk: int = READ_BUFFER) -> None:
        self._file = compressed
        self._chunk = chunk
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._member_started = False  # bytes of the current member were read (an EOF is a truncation)
        self._tail = b""  # the last, unfinished line of the chunk before
        #: Compressed bytes read before and after the last chunk of lines returned (for progress).
        self.consumed_before = self.consumed = 0
        self._read = 0

    def lines(self) -> list[bytes] | None:
        """The next whole lines (at least one), or None at the end of the file."""
        self.consumed_before = self.consumed
        while True:
            data = self._next_bytes()
            if data is None:
                self.consumed = self._read
                if self._tail:  # a last line without its newline
                    tail, self._tail = self._tail, b""
                    return [tail]
                return None
            lines = (self._tail + data).split(b"\n")
            self._tail = lines.pop()
            if lines:
                self.consumed = self._read
                return lines

    def _next_bytes(self) -> bytes | None:
        """The next inflated bytes (maybe empty), or None at the end of the file."""
        inflate = self._inflate
        if inflate.eof:  # a member ended: another may follow it (the recorder appends on a restart)
            rest = inflate.unused_data
            if not rest.strip(b"\0"):
                rest = self._file.read(self._chunk)
                self._read += len(rest)
                if not rest.strip(b"\0"):  # trailing zeros are padding, as gzip takes them
                    return None
            if not rest.startswith(b"\x1f\x8b"):
                raise gzip.BadGzipFile(f"not a gzip member after the end of the last one: {rest[:8]!r}")
            inflate = self._inflate = zlib.decompressobj(_GZIP_WBITS)
            return inflate.decompress(rest)
        compressed = self._file.read(self._chunk)
        self._read += len(compressed)
        if not compressed:
            if self._member_started:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            return None
        self._member_started = True
        return inflate.decompress(compressed)


class ReplayConnector(NativeConnector):
    exchange = "binance"

    def __init__(self, settings: ReplaySettings) -> None:
        if settings.replay_path is None:
            raise ValueError("CONNECTOR_NAME=replay needs REPLAY_PATH (a recording or a folder of them)")
        self.files = recordings(settings.replay_path)
        self.speed = settings.replay_speed
        self.progress_every_s = settings.replay_progress_s
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self._done_bytes = 0  # of the files read to the end
        self._reading: dict[int, _Position] = {}  # the files being read, by index
        markets = {MARKET_OF.get(f.parent.name) for f in self.files}
        if None in markets or len(markets) != 1:
            found = [str(f) for f in self.files[:3]]
            raise ValueError(
                f"REPLAY_PATH={settings.replay_path}: recordings must sit in one exchange folder "
                f"({'/'.join(sorted(MARKET_OF))}/<SYMBOL>_<YYYYMMDD>.gz), found {found}"
            )
        self.market: Market = markets.pop()  # type: ignore[assignment]
        self.exchange = EXCHANGE[self.market]
        venue_symbols = sorted({f.name.rsplit("_", 1)[0] for f in self.files} - {CONNECTION_FILE})
        symbols = [instrument_id(v, self.market) for v in venue_symbols]
        never = {"trades": 1e9, "depth": 1e9}  # no staleness in a recording (states.check is never run)
        self.states = SymbolStates(self.exchange, symbols, ["trades", "depth"], never)
        self.states.resyncing.update(symbols)
        trade_stream = "trade" if self.market == "spot" else "aggTrade"
        self.decoder = BinanceDecoder(self.market, venue_symbols, trade_stream, "diff", self.states)
        self._running = False
        self.finished = False
        self.lines = 0
        self.errors: list[dict[str, Any]] = []
        self.position_ns: int | None = None
        self._started = 0.0
        self._last_progress = 0.0

    def instruments(self) -> list[str]:
        return list(self.decoder.symbols)

    def is_connected(self) -> bool:
        return self._running

    def book(self, symbol: str) -> LocalBook | None:
        return self.decoder.books.get(symbol)

    async def close(self) -> None:
        """Nothing to close: files are read a step at a time."""
        self._running = False

    async def run(self, sink: FeedSink) -> None:
        self._started = self._last_progress = time.monotonic()
        self._running = True
        log.info("replay_started", files=len(self.files), speed=self.speed, exchange=self.exchange)
        switch_interval = sys.getswitchinterval()
        # The inflating thread needs the GIL back after each block it inflates; by default it waits
        # up to 5 ms for it each time while the decoder runs, and reads fall behind (~1 µs a line).
        sys.setswitchinterval(min(switch_interval, INFLATE_SWITCH_INTERVAL_S))
        try:
            if self.speed == 0 and len(self.files) == 1:
                await self._flat_out_one(sink)
            else:
                readers = [self._read(i, f) for i, f in enumerate(self.files)]
                lines = readers[0] if len(readers) == 1 else heapq.merge(*readers)  # receipt-time order
                if self.speed > 0:
                    await self._paced(lines, sink)
                else:
                    await self._flat_out(lines, sink)
        finally:
            sys.setswitchinterval(switch_interval)
        self.finished = True
        log.info("replay_finished", **self.progress())
        await asyncio.Event().wait()  # the feed stays up (health shows the replay finished)

    async def _flat_out(self, lines: Iterator[Line], sink: FeedSink) -> None:
        """REPLAY_SPEED=0: every line at once, delivered a step (LINES_PER_STEP lines) at a time.
        The loop of ``_paced`` without the pacing, its per-line bookkeeping done once a step."""
        on_frame = self.decoder.on_frame
        batch: list[Delivered] = []
        in_step = 0
        for line in lines:
            text = line[4]
            if text.startswith(_SNAPSHOT_PREFIX):
                batch += self._snapshot(line[3], text)
            else:
                batch += on_frame(text, line[0]).events
            in_step += 1
            if in_step == LINES_PER_STEP:
                self.lines += in_step
                self.position_ns = line[0]
                in_step = 0
                if batch:
                    await sink.deliver(batch)
                    batch = []
                self._progress_now()
        if in_step:
            self.lines += in_step
            self.position_ns = line[0]
        if batch:
            await sink.deliver(batch)

    async def _flat_out_one(self, sink: FeedSink) -> None:
        """``_flat_out`` for the common case, one file: its chunks' lines parsed right here, with no
        merge, no generator and no tuple per line (~0.3 µs a line, ``bench/replay.py``)."""
        path = self.files[0]
        symbol = path.name.rsplit("_", 1)[0]
        on_frame = self.decoder.on_frame
        batch: list[Delivered] = []
        number = in_step = recv_ns = 0
        chunks = self._chunks(0, path)
        try:
            for chunk in chunks:
                at = self._reading[0]
                for raw in chunk:
                    stamp, _, text = raw.partition(b" ")
                    if not stamp.isdigit() or not text:
                        raise ValueError(f"line {number + 1} is not '<recv_ts_ns> <text>'")
                    number += 1
                    recv_ns = int(stamp)
                    if text.startswith(_SNAPSHOT_PREFIX):
                        batch += self._snapshot(symbol, text)
                    else:
                        batch += on_frame(text, recv_ns).events
                    in_step += 1
                    if in_step == LINES_PER_STEP:
                        self.lines += in_step
                        self.position_ns = recv_ns
                        at.line = number
                        in_step = 0
                        if batch:
                            await sink.deliver(batch)
                            batch = []
                        self._progress_now()
        except (OSError, EOFError, zlib.error, ValueError) as error:
            self._file_error(path, number, error)
        finally:
            chunks.close()
        if in_step:
            self.lines += in_step
            self.position_ns = recv_ns
        if batch:
            await sink.deliver(batch)

    async def _paced(self, lines: Iterator[Line], sink: FeedSink) -> None:
        first_ns: int | None = None
        batch: list[Delivered] = []
        for line in lines:
            recv_ns = line[0]
            if first_ns is None:
                first_ns = recv_ns
            due = (recv_ns - first_ns) / 1e9 / self.speed - (time.monotonic() - self._started)
            if due > 0:  # the next line is not due yet: what is read goes out now
                if batch:
                    await sink.deliver(batch)
                    batch = []
                self._progress_now()
                await asyncio.sleep(due)
            batch.extend(self._step(line))
            if len(batch) >= LINES_PER_STEP or not self.lines % LINES_PER_STEP:
                if batch:
                    await sink.deliver(batch)
                    batch = []
                self._progress_now()
        if batch:
            await sink.deliver(batch)

    def _step(self, line: Line) -> Sequence[Delivered]:
        recv_ns, _, _, venue_symbol, text = line
        self.lines += 1
        self.position_ns = recv_ns
        if text.startswith(_SNAPSHOT_PREFIX):
            return self._snapshot(venue_symbol, text)
        return self.decoder.on_frame(text, recv_ns).events

    def _snapshot(self, venue_symbol: str, text: bytes) -> Sequence[Delivered]:
        """A REST snapshot the live connector fetched."""
        try:
            snapshot = parse_rest_snapshot(text)
        except MalformedFrame as error:
            self.decoder.count_malformed(error.reason, error.detail)
            return []
        return self.decoder.on_snapshot(instrument_id(venue_symbol, self.market), snapshot)

    def _chunks(self, index: int, path: Path) -> Generator[list[bytes], None, None]:
        """The file's lines, a chunk at a time; a read error (truncated, corrupt) raises."""
        try:
            with path.open("rb") as compressed, ThreadPoolExecutor(1, f"replay-inflate-{index}") as inflating:
                inflater = Inflater(compressed)
                at = self._reading[index] = _Position()
                # The next chunk inflates in a worker thread while this one is decoded: zlib lets go
                # of the GIL while it inflates, so on a second core reading costs the decoder little.
                ahead = inflating.submit(inflater.lines)
                while True:
                    chunk = ahead.result()
                    if chunk is None:
                        return
                    at.chunk(at.line, len(chunk), inflater.consumed_before, inflater.consumed)
                    ahead = inflating.submit(inflater.lines)
                    yield chunk
        finally:
            self._reading.pop(index, None)
            self._done_bytes += path.stat().st_size

    def _read(self, index: int, path: Path) -> Iterator[Line]:
        """The file's lines, parsed, in order; a bad line or a read error ends the file, reported."""
        symbol = path.name.rsplit("_", 1)[0]
        number = 0
        chunks = self._chunks(index, path)
        try:
            for chunk in chunks:
                at = self._reading[index]
                for raw in chunk:
                    number += 1
                    at.line = number
                    stamp, _, text = raw.partition(b" ")
                    if not stamp.isdigit() or not text:
                        raise ValueError(f"line {number} is not '<recv_ts_ns> <text>'")
                    yield int(stamp), index, number, symbol, text
        except (OSError, EOFError, zlib.error, ValueError) as error:
            self._file_error(path, number, error)
        finally:
            chunks.close()

    def _file_error(self, path: Path, after_line: int, error: Exception) -> None:
        report = {"file": str(path), "after_line": after_line, "error": repr(error)}
        self.errors.append(report)
        log.error("replay_file_error", **report)

    def _progress_now(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.progress_every_s:
            self._last_progress = now
            log.info("replay_progress", **self.progress())

    def progress(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        position = (
            None if self.position_ns is None else datetime.fromtimestamp(self.position_ns / 1e9, tz=UTC)
        )
        read = self._done_bytes + sum(at.compressed_bytes() for at in self._reading.values())
        return {
            "lines": self.lines,
            "percent": 100.0 if self.finished else round(100 * min(read / max(self.total_bytes, 1), 1.0), 1),
            "position": position.isoformat() if position else None,
            "lines_per_s": round(self.lines / elapsed),
            "file_errors": len(self.errors),
        }

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._running,
            "subscribed_trades": self.instruments(),
            "subscribed_depth": self.instruments(),
            "event_counter": self.lines,
            "replay": {
                "files": [str(f) for f in self.files],
                "speed": self.speed,
                "finished": self.finished,
                "errors": self.errors,
                **self.progress(),
            },
            **self.decoder.health(),
        }

    def counters(self) -> ConnectorCounters:
        return ConnectorCounters(
            errors={f"malformed_{r}": n for r, n in self.decoder.malformed.items()},
            resyncs={s: b.stats.resyncs for s, b in self.decoder.books.items()},
            gaps={s: b.stats.gaps for s, b in self.decoder.books.items()},
        )
