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
import io
import time
import zlib
from collections.abc import Iterator, Sequence
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
#: Lines decoded per step at most before their events are delivered together.
LINES_PER_STEP = 256
#: Decompressed bytes read at a time (small enough that progress, measured on the compressed file, moves).
READ_BUFFER = 1 << 16
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
        self._reading: dict[int, IO[bytes]] = {}  # the compressed files being read, by index
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
        readers = [self._read(i, f) for i, f in enumerate(self.files)]
        lines = readers[0] if len(readers) == 1 else heapq.merge(*readers)  # receipt-time order
        self._started = self._last_progress = time.monotonic()
        self._running = True
        log.info("replay_started", files=len(self.files), speed=self.speed, exchange=self.exchange)
        first_ns: int | None = None
        batch: list[Delivered] = []
        for line in lines:
            recv_ns = line[0]
            if first_ns is None:
                first_ns = recv_ns
            if self.speed > 0:
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
        self.finished = True
        log.info("replay_finished", **self.progress())
        await asyncio.Event().wait()  # the feed stays up (health shows the replay finished)

    def _step(self, line: Line) -> Sequence[Delivered]:
        recv_ns, _, _, venue_symbol, text = line
        self.lines += 1
        self.position_ns = recv_ns
        if text.startswith(_SNAPSHOT_PREFIX):  # a REST snapshot the live connector fetched
            try:
                snapshot = parse_rest_snapshot(text)
            except MalformedFrame as error:
                self.decoder.count_malformed(error.reason, error.detail)
                return []
            return self.decoder.on_snapshot(instrument_id(venue_symbol, self.market), snapshot)
        return self.decoder.on_frame(text, recv_ns).events

    def _read(self, index: int, path: Path) -> Iterator[Line]:
        symbol = path.name.rsplit("_", 1)[0]
        number = 0
        try:
            with (
                path.open("rb") as compressed,
                gzip.GzipFile(fileobj=compressed) as unzipped,
                # GzipFile's own line iteration is a Python call a line; a 64 kB buffer over it splits
                # lines in C (~2x faster reading, measured by bench/replay.py)
                io.BufferedReader(unzipped, buffer_size=READ_BUFFER) as lines,
            ):
                self._reading[index] = compressed
                for number, raw in enumerate(lines, start=1):
                    stamp, _, text = raw.rstrip(b"\n").partition(b" ")
                    if not stamp.isdigit() or not text:
                        raise ValueError(f"line {number} is not '<recv_ts_ns> <text>'")
                    yield int(stamp), index, number, symbol, text
        except (OSError, EOFError, zlib.error, ValueError) as error:
            report = {"file": str(path), "after_line": number, "error": repr(error)}
            self.errors.append(report)
            log.error("replay_file_error", **report)
        finally:
            self._reading.pop(index, None)
            self._done_bytes += path.stat().st_size

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
        read = self._done_bytes + sum(f.tell() for f in self._reading.values() if not f.closed)
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
