"""``ReplayConnector`` (CONNECTOR_NAME=replay): recorded Binance frames through the live code.

Reads ``<exchange>/<SYMBOL>_<YYYYMMDD>.gz`` recordings (``REPLAY_PATH``: one file or a folder of
them; lines ``<recv_ts_ns> <raw text>``), merges them in receipt-time order, and feeds every line
to the same ``BinanceConnector`` parsing and order-book code the live feed runs - websocket frames
to ``on_frame`` with their original receipt time (kept as ``ts_recv``), REST snapshot lines to
``apply_snapshot`` - so it publishes exactly what the live connector published. ``REPLAY_SPEED``
multiplies the recorded pace (0 = as fast as possible). A truncated or corrupt file is reported
with its position and the replay carries on with the other files.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import Status
from services.common.logging import get_logger
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.parse import EXCHANGE, MalformedFrame, Market, parse_rest_snapshot
from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.events import Event
from services.connector_feed.recorder import CONNECTION_FILE
from services.connector_feed.settings import FeedSettings

log = get_logger("replay")

MARKET_OF = {exchange: market for market, exchange in EXCHANGE.items()}
#: Lines handled per ``next_event`` call at most before handing control back.
LINES_PER_CALL = 1000
PROGRESS_EVERY_S = 5.0

Line = tuple[int, int, int, str, str]  # recv_ns, file index, line number, venue symbol, text


def recordings(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.gz")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"REPLAY_PATH={path}: no .gz recordings there")
    return files


class ReplayConnector(ConnectorWrapper):
    exchange = "binance"

    def __init__(self, settings: FeedSettings) -> None:
        if settings.replay_path is None:
            raise ValueError("CONNECTOR_NAME=replay needs REPLAY_PATH (a recording or a folder of them)")
        self.settings = settings
        self.files = recordings(settings.replay_path)
        self.speed = settings.replay_speed
        markets = {MARKET_OF.get(f.parent.name) for f in self.files}
        if None in markets or len(markets) != 1:
            raise ValueError(
                f"recordings must sit in one exchange folder ({sorted(MARKET_OF)}): {self.files[:3]}"
            )
        self.market: Market = markets.pop()  # type: ignore[assignment]
        self.exchange = EXCHANGE[self.market]
        symbols = sorted({f.name.rsplit("_", 1)[0] for f in self.files} - {CONNECTION_FILE})
        self.inner = BinanceConnector(
            settings.model_copy(
                update={"binance_market": self.market, "symbols": symbols, "record_dir": None}
            )
        )
        self._lines: Iterator[Line] = iter(())
        self._next: Line | None = None  # the line read ahead to pace the replay
        self._connected = False
        self.finished = False
        self.lines = 0
        self.errors: list[dict[str, Any]] = []
        self.position_ns: int | None = None
        self._first_ns: int | None = None
        self._started = 0.0
        self._last_progress = 0.0

    async def connect(self) -> None:
        self.inner.prepare()
        readers = [self._read(i, f) for i, f in enumerate(self.files)]
        self._lines = readers[0] if len(readers) == 1 else heapq.merge(*readers)  # receipt-time order
        self._connected, self.finished = True, False
        self._started = self._last_progress = time.monotonic()
        log.info("replay_started", files=len(self.files), speed=self.speed, exchange=self.exchange)

    async def disconnect(self) -> None:
        self._connected = False

    async def subscribe_trades(self, symbol: str) -> None:
        """The recording decides what is replayed."""

    async def subscribe_depth(self, symbol: str) -> None:
        """The recording decides what is replayed."""

    async def is_connected(self) -> bool:
        return self._connected

    def is_resyncing(self) -> bool:
        return self.inner.is_resyncing()

    async def next_event(self) -> Event | Status | None:
        for _ in range(LINES_PER_CALL):
            event = self.inner.pop_pending()
            if event is not None:
                return event
            if self.finished:
                return None
            wait = self._pace()
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))
                return None
            self._step()
        return self.inner.pop_pending()

    def _pace(self) -> float:
        """Seconds to wait before the next line is due at REPLAY_SPEED (0: never wait)."""
        if self.speed == 0:
            return 0.0
        if self._next is None:
            self._next = next(self._lines, None)
        if self._next is None:
            return 0.0
        if self._first_ns is None:
            self._first_ns = self._next[0]
            self._started = time.monotonic()
        due = (self._next[0] - self._first_ns) / 1e9 / self.speed
        return due - (time.monotonic() - self._started)

    def _step(self) -> None:
        line, self._next = (self._next, None) if self._next is not None else (next(self._lines, None), None)
        if line is None:
            self.finished = True
            log.info("replay_finished", **self._progress())
            return
        recv_ns, _, _, venue_symbol, text = line
        self.lines += 1
        if self._first_ns is None:
            self._first_ns = recv_ns
        self.position_ns = recv_ns
        if text.startswith('{"lastUpdateId"'):  # a REST snapshot the live connector fetched
            try:
                snapshot = parse_rest_snapshot(text)
            except MalformedFrame as error:
                self.inner.malformed[error.reason] = self.inner.malformed.get(error.reason, 0) + 1
            else:
                symbol = venue_symbol + ("-PERP" if self.market == "usdm" else "")
                self.inner.apply_snapshot(symbol, snapshot)
        else:
            self.inner.on_frame(text, recv_ns)
        if not self.lines & 1023:  # look at the clock now and then, not per line
            now = time.monotonic()
            if now - self._last_progress >= PROGRESS_EVERY_S:
                self._last_progress = now
                log.info("replay_progress", **self._progress())

    def _read(self, index: int, path: Path) -> Iterator[Line]:
        symbol = path.name.rsplit("_", 1)[0]
        number = 0
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                for number, raw in enumerate(lines, start=1):
                    stamp, _, text = raw.rstrip("\n").partition(" ")
                    if not stamp.isdigit() or not text:
                        raise ValueError(f"line {number} is not '<recv_ts_ns> <text>'")
                    yield int(stamp), index, number, symbol, text
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as error:
            report = {"file": str(path), "after_line": number, "error": repr(error)}
            self.errors.append(report)
            log.error("replay_file_error", **report)

    def _progress(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        position = (
            None if self.position_ns is None else datetime.fromtimestamp(self.position_ns / 1e9, tz=UTC)
        )
        return {
            "lines": self.lines,
            "position": position.isoformat() if position else None,
            "lines_per_s": round(self.lines / elapsed),
            "file_errors": len(self.errors),
        }

    def get_health_status(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "replay": {
                "files": [str(f) for f in self.files],
                "speed": self.speed,
                "finished": self.finished,
                "errors": self.errors,
                **self._progress(),
            },
            "books": self.inner.get_health_status()["books"],
            "malformed": dict(self.inner.malformed),
        }
