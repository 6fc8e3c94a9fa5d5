"""``HftbacktestReplayConnector`` (CONNECTOR_NAME=hftbacktest): hftbacktest event files onto the bus.

A thin binding: files are listed at start, each is loaded off the event loop when its turn comes
(``load_rows`` in a thread), ``HbtConverter`` turns its rows into batches, and ``next_event`` hands
them out one event at a time, paced by ``local_ts`` at ``REPLAY_SPEED`` (0 = flat out). A file that
cannot be read is reported (health ``replay.errors``, a log line) and the replay goes on with the
next one. The events keep the file's times: ``ts_event`` = ``exch_ts``, ``ts_recv`` = ``local_ts``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.common.logging import get_logger
from services.connector_feed.connector import ConnectorWrapper
from services.connector_feed.events import Event
from services.connector_feed.hftbacktest.decode import Batch, HbtConverter
from services.connector_feed.hftbacktest.format import HbtDataError, load_rows
from services.connector_feed.hftbacktest.settings import HbtReplaySettings

log = get_logger("hftbacktest_replay")

#: Batches converted per ``next_event`` call at most before control goes back to the loop.
BATCHES_PER_CALL = 256


def replay_files(path: Path) -> list[Path]:
    """``path`` itself, or the event files of a folder in name order (``*_eod.npz`` snapshots excluded)."""
    if path.is_dir():
        files = sorted(
            f
            for f in path.rglob("*")
            if f.suffix in (".npz", ".npy")
            and not f.stem.endswith("_eod")
            and not any(part.startswith(".") for part in f.relative_to(path).parts)  # record-npz chunks
        )
        if not files:
            raise HbtDataError(f"REPLAY_PATH={path}: no .npz/.npy event files there")
        return files
    if not path.is_file():
        raise HbtDataError(f"REPLAY_PATH={path}: no such file or folder")
    return [path]


class HftbacktestReplayConnector(ConnectorWrapper):
    def __init__(self, settings: HbtReplaySettings) -> None:
        self.settings = settings
        self.exchange = settings.hbt_exchange
        self.files = replay_files(settings.replay_path)
        snapshot = settings.hbt_initial_snapshot
        if snapshot is not None and not snapshot.is_file():
            raise HbtDataError(f"HBT_INITIAL_SNAPSHOT={snapshot}: no such file")
        self.speed = settings.replay_speed
        self.converter = self._new_converter()
        self._pending: deque[Event] = deque()
        self._files: Iterator[Path] = iter(())
        self._batches: Iterator[Batch] = iter(())
        self._connected = False
        self.finished = False
        self.errors: list[dict[str, str]] = []
        self.current_file: str | None = None
        self._first_ts: int | None = None
        self._started = 0.0

    def _new_converter(self) -> HbtConverter:
        s = self.settings
        return HbtConverter(s.hbt_exchange, s.symbol, s.tick_size, s.lot_size)

    async def connect(self) -> None:
        self.converter = self._new_converter()
        self._pending.clear()
        self._files, self._batches = iter(self.files), iter(())
        self._first_ts, self.finished = None, False
        snapshot = self.settings.hbt_initial_snapshot
        if snapshot is not None:
            self.converter.initial_snapshot(await asyncio.to_thread(load_rows, snapshot))
        self._connected = True
        log.info("replay_started", files=len(self.files), speed=self.speed, symbol=self.settings.symbol)

    async def disconnect(self) -> None:
        self._connected = False

    async def subscribe_trades(self, symbol: str) -> None:
        """The files decide what is replayed."""

    async def subscribe_depth(self, symbol: str) -> None:
        """The files decide what is replayed."""

    async def is_connected(self) -> bool:
        return self._connected

    async def next_event(self) -> Event | None:
        if not self._pending and not await self._refill():
            return None
        event = self._pending[0]
        wait = self._due_in(event.ts_recv)
        if wait > 0:
            await asyncio.sleep(min(wait, 0.05))
            return None
        return self._pending.popleft()

    async def _refill(self) -> bool:
        """Convert the next batch (loading the next file when one ends); False when none is ready."""
        for _ in range(BATCHES_PER_CALL):
            batch = next(self._batches, None)
            if batch is not None:
                self._pending.extend(batch)
                return True
            if self.finished:
                return False
            path = next(self._files, None)
            if path is None:
                self.finished = True
                log.info("replay_finished", **self.progress())
                return False
            await self._open(path)
        return False

    async def _open(self, path: Path) -> None:
        self.current_file = str(path)
        try:
            rows = await asyncio.to_thread(load_rows, path)
        except HbtDataError as error:
            self.errors.append({"file": str(path), "error": str(error)})
            log.error("replay_file_error", file=str(path), error=str(error))
            return
        self._batches = self.converter.convert(rows)

    def _due_in(self, ts: int) -> float:
        """Seconds until an event received at ``ts`` is due at REPLAY_SPEED (0: never wait)."""
        if self.speed == 0:
            return 0.0
        if self._first_ts is None:
            self._first_ts, self._started = ts, time.monotonic()
        return (ts - self._first_ts) / 1e9 / self.speed - (time.monotonic() - self._started)

    def progress(self) -> dict[str, Any]:
        return {**asdict(self.converter.stats), "file_errors": len(self.errors)}

    def get_health_status(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "replay": {
                "files": [str(f) for f in self.files],
                "current_file": self.current_file,
                "speed": self.speed,
                "finished": self.finished,
                "errors": self.errors,
                **self.progress(),
            },
        }

    def error_counts(self) -> dict[str, int]:
        stats = self.converter.stats
        return {
            **stats.skipped,
            "off_tick_prices": stats.off_tick_prices,
            "off_lot_qtys": stats.off_lot_qtys,
            "file_errors": len(self.errors),
        }
