"""Where ``hftfeed record-npz`` keeps its files, and how a day's chunks become its ``.npz``.

``<root>/<exchange>/<SYMBOL>_<YYYYMMDD>.npz`` (the day, key ``data``) and ``..._eod.npz`` (the
book at the day's end, hftbacktest's ``initial_snapshot`` for the next day). While a day is being
recorded its rows go, every flush interval, into numbered chunk files under
``<root>/<exchange>/.parts/<SYMBOL>_<YYYYMMDD>/`` (written to a temporary name, fsynced, renamed:
a chunk is whole or absent); the day's file is assembled from them at rotation and at stop. A
recorder that restarts finds leftover chunks and assembles them (``recover``); one that resumes a
day whose file exists turns that file back into the day's first chunk, ``base.npy``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.common.book import OrderBook
from services.common.logging import get_logger
from services.connector_feed.hftbacktest.encode import (
    book_from_rows,
    local_view,
    order_and_flag,
    snapshot_rows,
)
from services.connector_feed.hftbacktest.format import (
    EVENT_DTYPE,
    KIND_MASK,
    TRADE_EVENT,
    HbtDataError,
    Rows,
    load_rows,
)

log = get_logger("record_npz")

PARTS = ".parts"
BASE = "base.npy"


def day_of(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y%m%d")


def previous_day(day: str) -> str:
    return (datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) - timedelta(days=1)).strftime("%Y%m%d")


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)``, fsync, rename over ``path``: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_npy(path: Path, rows: Rows) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, rows, allow_pickle=False)

    _atomic(path, write)


def save_npz(path: Path, rows: Rows) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, data=rows)

    _atomic(path, write)


class DayFiles:
    """The files of one (exchange, symbol, day)."""

    def __init__(self, root: Path, exchange: str, symbol: str, day: str) -> None:
        folder = root / exchange
        self.exchange, self.symbol, self.day = exchange, symbol, day
        self.final = folder / f"{symbol}_{day}.npz"
        self.eod = folder / f"{symbol}_{day}_eod.npz"
        self.parts = folder / PARTS / f"{symbol}_{day}"
        self.previous_eod = folder / f"{symbol}_{previous_day(day)}_eod.npz"

    def chunk_paths(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        numbered = sorted(p for p in self.parts.glob("*.npy") if p.stem.isdigit())
        base = self.parts / BASE
        return ([base] if base.exists() else []) + numbered

    def next_chunk(self) -> int:
        numbered = [int(p.stem) for p in self.chunk_paths() if p.stem.isdigit()]
        return max(numbered, default=0) + 1

    def write_chunk(self, number: int, rows: Rows) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        save_npy(self.parts / f"{number:08d}.npy", rows)

    def read_chunks(self) -> list[Rows]:
        return [load_rows(p) for p in self.chunk_paths()]

    def resume(self) -> list[Rows]:
        """Make the day's recorded rows chunks again (so new rows append); return them, in order."""
        if self.parts.is_dir() and not (self.parts / BASE).exists() and self.final.exists():
            shutil.rmtree(self.parts)  # chunks already in the final file (stopped before cleanup)
        if self.final.exists():
            self.parts.mkdir(parents=True, exist_ok=True)
            save_npy(self.parts / BASE, local_view(load_rows(self.final)))
            self.final.unlink()
            self.eod.unlink(missing_ok=True)
        return self.read_chunks()

    def start_book(self) -> OrderBook:
        """The previous day's end-of-day book, if we wrote one (else empty)."""
        if not self.previous_eod.exists():
            return OrderBook()
        try:
            return book_from_rows([load_rows(self.previous_eod)])
        except HbtDataError as error:
            log.error("npz_eod_unreadable", file=str(self.previous_eod), error=str(error))
            return OrderBook()

    def assemble(self, book: OrderBook) -> int:
        """Chunks -> the day's ``.npz`` (EXCH/LOCAL flags set) + its ``_eod.npz``; chunks removed."""
        chunks = self.read_chunks()
        rows = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)
        # Received order, by local_ts; at one local_ts trades first (hftbacktest's tie rule: a
        # trade before the depth change it caused, so a queue position does not move twice).
        is_depth = (rows["ev"] & KIND_MASK) != TRADE_EVENT
        rows = rows[np.lexsort((is_depth, rows["local_ts"]))]
        save_npz(self.final, order_and_flag(rows))
        save_npz(self.eod, snapshot_rows(book))
        shutil.rmtree(self.parts, ignore_errors=True)
        return len(rows)


def recover(root: Path) -> list[DayFiles]:
    """Assemble every day whose chunks a previous run left behind (a crash); returns those days."""
    done: list[DayFiles] = []
    for parts in sorted(root.glob(f"*/{PARTS}/*_*")):
        symbol, _, day = parts.name.rpartition("_")
        files = DayFiles(root, parts.parent.parent.name, symbol, day)
        if files.final.exists() and not (parts / BASE).exists():
            shutil.rmtree(parts)  # the final file was written; only the cleanup was cut short
            continue
        try:
            chunks = files.read_chunks()
            book = book_from_rows(chunks, files.start_book())
            rows = files.assemble(book)
        except (HbtDataError, OSError) as error:
            log.error("npz_recovery_failed", folder=str(parts), error=repr(error))
            continue
        log.warning("npz_recovered", file=str(files.final), rows=rows)
        done.append(files)
    return done
