"""Recording raw venue frames the way hftbacktest's collector does.

``<RECORD_DIR>/<exchange>/<SYMBOL>_<YYYYMMDD>.gz``: one gzip file per symbol per UTC day, each
line ``<recv_ts_ns> <raw text>``; files rotate at midnight UTC (by each line's receipt time).
Writing happens on a thread of its own, fed by a bounded queue (a full queue drops the line and
counts it, it never blocks the event loop). Files are flushed every ``flush_every_s`` (a sync
flush: everything up to it is readable even if the process is killed) and closed properly - the
gzip trailer written - when the recorder is closed, which the feed does on SIGINT/SIGTERM. A file
that already exists (a restart on the same day) gets a new gzip member appended.
"""

from __future__ import annotations

import gzip
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from services.common.logging import get_logger

log = get_logger("recorder")

#: Lines that belong to no symbol (control frames, frames we could not parse).
CONNECTION_FILE = "_connection"
_STOP = object()


def day_of(recv_ns: int) -> str:
    return datetime.fromtimestamp(recv_ns / 1e9, tz=UTC).strftime("%Y%m%d")


class Recorder:
    def __init__(
        self, root: Path, exchange: str, flush_every_s: float = 1.0, max_queue: int = 200_000
    ) -> None:
        self.directory = Path(root) / exchange
        self.flush_every_s = flush_every_s
        self._queue: queue.Queue[tuple[str, int, str] | object] = queue.Queue(maxsize=max_queue)
        self._files: dict[str, tuple[str, IO[bytes]]] = {}  # symbol -> (day, open file)
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def write(self, symbol: str, recv_ns: int, text: str | bytes) -> None:
        """Queue one line (never blocks: a full queue drops the line, counted)."""
        line = text if isinstance(text, str) else text.decode(errors="replace")
        try:
            self._queue.put_nowait((symbol, recv_ns, line))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.error("recorder_dropped_lines", dropped=self.dropped, reason="the disk is behind")

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close every file (gzip trailer included), stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def path(self, symbol: str, day: str) -> Path:
        return self.directory / f"{symbol}_{day}.gz"

    def _run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        next_flush = time.monotonic() + self.flush_every_s
        while True:
            try:
                item = self._queue.get(timeout=max(next_flush - time.monotonic(), 0.01))
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if isinstance(item, tuple):
                self._write_line(*item)
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + self.flush_every_s
        for _, handle in self._files.values():
            handle.close()
        self._files.clear()

    def _write_line(self, symbol: str, recv_ns: int, line: str) -> None:
        day = day_of(recv_ns)
        current = self._files.get(symbol)
        try:
            if current is None or current[0] != day:  # first line, or midnight UTC passed
                if current is not None:
                    current[1].close()
                # Kept open across lines (closed at rotation and in close()): not a with-block.
                handle: IO[bytes] = gzip.open(self.path(symbol, day), "ab")  # type: ignore[assignment]  # noqa: SIM115
                current = self._files[symbol] = (day, handle)
            current[1].write(f"{recv_ns} {line}\n".encode())
            self.written += 1
        except OSError as error:
            self.errors += 1
            if self.errors <= 10:
                log.error("recorder_write_failed", symbol=symbol, error=repr(error))

    def _flush(self) -> None:
        for _, handle in self._files.values():
            try:
                handle.flush()  # GzipFile.flush: a zlib sync flush, readable up to here
            except OSError as error:
                self.errors += 1
                log.error("recorder_flush_failed", error=repr(error))
