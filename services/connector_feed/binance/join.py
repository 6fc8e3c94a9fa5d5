"""When a replacement connection has joined the old one's stream (make-before-break).

While a connection is replaced, the new one's frames are held back and the old one keeps being
read. The new socket starts later and is not in lockstep with the old; the two have joined when,
for every stream, the old one has delivered everything up to where the new one begins:

- a stream the new socket delivered: the old one's last id reaches the new one's first
  (trades and aggregate trades: ids are contiguous; spot depth: ``u >= U - 1`` of the new one's
  first diff; USD-M depth: ``u >= pu``);
- a stream the new socket has not delivered yet: the new socket has been live for ``settle_s``
  (its first frame, or its handshake on a quiet connection) and the old one delivered nothing of
  that stream since - nothing happened there that only the old socket saw.

Then the held frames are handed on (duplicates are filtered downstream), the new connection takes
over and the old one is closed: no trade lost, no gap, no resync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from services.connector_feed.binance.links import FrameHandler, Link

Ids = tuple[int, int]  # (first id the frame covers minus the one it continues from, last id)


def peek(frame: str | bytes | memoryview) -> tuple[str, int, int] | None:
    """(stream, id the frame continues from, last id) of a combined-stream trade or depth frame."""
    try:
        message = orjson.loads(frame)
        stream, data = message["stream"], message["data"]
        kind = data.get("e")
        if kind == "trade" or kind == "aggTrade":
            trade_id = data["t" if kind == "trade" else "a"]
            return (stream, trade_id - 1, trade_id) if type(trade_id) is int else None
        if kind == "depthUpdate":
            first, last, prev = data["U"], data["u"], data.get("pu")
            if type(first) is not int or type(last) is not int:
                return None
            return stream, (prev if type(prev) is int else first - 1), last
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return None


class Join:
    def __init__(
        self, streams: list[str], settle_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.streams = streams
        self.settle_s = settle_s
        self._clock = clock
        self.opened_at = clock()
        self.live_at: float | None = None  # the new socket's first frame
        self.held: list[tuple[bytes, int, bool]] = []  # (frame, receipt time, binary)
        self._new_from: dict[str, int] = {}  # stream -> id the new socket's first frame continues from
        self._old_last: dict[str, int] = {}  # stream -> last id the old socket delivered
        self._old_after_live: set[str] = set()  # streams the old socket delivered after the new went live
        self.changed = asyncio.Event()  # a frame arrived on either socket

    def hold(self, frame: bytes, ts_recv: int, binary: bool = False) -> None:
        """A frame of the new socket: kept back until the join."""
        if self.live_at is None:
            self.live_at = self._clock()
        self.changed.set()
        self.held.append((frame, ts_recv, binary))
        ids = None if binary else peek(frame)
        if ids is not None and ids[0] not in self._new_from:
            self._new_from[ids[0]] = ids[1]

    def old(self, frame: str | bytes | memoryview) -> None:
        """A frame of the old socket (it is handed on as usual)."""
        self.changed.set()
        ids = peek(frame)
        if ids is None:
            return
        stream, _, last = ids
        if last > self._old_last.get(stream, -1):
            self._old_last[stream] = last
        if self.live_at is not None and stream not in self._new_from:
            self._old_after_live.add(stream)

    def joined(self, quiet: bool) -> bool:
        """Whether the old socket can go. ``quiet``: a connection without depth (it may never speak)."""
        now = self._clock()
        live_at = self.live_at if self.live_at is not None else (self.opened_at if quiet else None)
        if live_at is None:
            return False
        settled = now - live_at >= self.settle_s
        for stream in self.streams:
            begins = self._new_from.get(stream)
            if begins is None:
                if not settled or stream in self._old_after_live:
                    return False
            elif self._old_last.get(stream, -1) < begins:
                return False
        return True


def holding(join: Join) -> FrameHandler:
    """A replacement's frames: held back (copied: the socket's buffer is reused) until the join."""

    def hold(frame: bytes | memoryview, ts_recv: int, link: Link, binary: bool) -> bool:
        join.hold(bytes(frame), ts_recv, binary)
        return True

    return hold


def watching(join: Join, handle: FrameHandler) -> FrameHandler:
    """The old side of a replacement: handled as ever, and noted for the join."""

    def watch(frame: bytes | memoryview, ts_recv: int, link: Link, binary: bool) -> bool:
        if not binary:
            join.old(frame)
        return handle(frame, ts_recv, link, binary)

    return watch
