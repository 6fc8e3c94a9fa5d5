"""The recorder tap: every frame and REST snapshot as received, in hftbacktest's collector layout.

``<RECORD_DIR>/<exchange>/<SYMBOL>_<YYYYMMDD>.gz`` per venue symbol (``_connection`` for frames
of no symbol: control frames, malformed ones), written off the event loop by ``recorder.Recorder``.
``close`` finishes every file (a complete gzip) without blocking the loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.connector_feed.recorder import CONNECTION_FILE, Recorder


class RecorderTap:
    def __init__(self, root: Path, exchange: str) -> None:
        self.recorder = Recorder(root, exchange)

    def frame(self, venue_symbol: str | None, recv_ns: int, frame: str | bytes) -> None:
        self.recorder.write(venue_symbol or CONNECTION_FILE, recv_ns, frame)

    def snapshot(self, venue_symbol: str, recv_ns: int, raw: str) -> None:
        self.recorder.write(venue_symbol, recv_ns, raw)

    async def close(self, timeout_s: float = 2.0) -> None:
        await asyncio.to_thread(self.recorder.close, timeout_s)

    def health(self) -> dict[str, Any]:
        return {
            "written": self.recorder.written,
            "dropped": self.recorder.dropped,
            "errors": self.recorder.errors,
        }
