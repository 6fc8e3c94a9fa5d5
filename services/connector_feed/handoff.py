"""``Handoff``: a push connector's deliveries, held for a reader that pulls them one at a time.

It is the ``FeedSink`` a native connector (one that pushes each frame's events) delivers to when
something pulls instead - ``binance.hft.BinanceHFTConnector`` answers the seed's ``next_event()``
from it. Bounded by backpressure, never by loss: ``put`` returns False above ``high_water`` (the
connector stops reading its socket) and ``room()`` / ``deliver`` wait until the reader has brought
it down to half of that; every such pause is counted. ``get`` waits for the next item (no polling
delay) and returns None only once the producer has ended (``close``) and everything is read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from services.connector_feed.connector import Delivered


class Handoff:
    def __init__(self, high_water: int) -> None:
        if high_water < 2:
            raise ValueError("high_water must be >= 2")
        self.high_water = high_water
        self.low_water = high_water // 2
        self._items: deque[Delivered] = deque()
        self._ready = asyncio.Event()  # set when items arrive or the producer ends
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False
        self.received = 0
        self.pauses = 0  # times the producer was told to wait (the overflow policy: backpressure)
        self.peak = 0

    def __len__(self) -> int:
        return len(self._items)

    # ---- the producer's side: a FeedSink ------------------------------------------------------

    def put(self, batch: Sequence[Delivered]) -> bool:
        """Everything parsed from one frame, in order. False: above the high-water mark, stop
        reading until ``room()``."""
        items = self._items
        items.extend(batch)
        self.received += len(batch)
        size = len(items)
        if size > self.peak:
            self.peak = size
        self._ready.set()
        if size < self.high_water:
            return True
        self.pauses += 1
        self._room.clear()
        return False

    async def deliver(self, batch: Sequence[Delivered]) -> None:
        if not self.put(batch):
            await self.room()

    async def room(self) -> None:
        while len(self._items) > self.low_water and not self.closed:
            self._room.clear()
            await self._room.wait()

    def close(self) -> None:
        """The producer has ended: ``get`` returns what is left, then None."""
        self.closed = True
        self._ready.set()
        self._room.set()

    # ---- the reader's side --------------------------------------------------------------------

    async def get(self) -> Delivered | None:
        """The next item, waiting for one; None once the producer has ended and all is read."""
        items = self._items
        while not items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item = items.popleft()
        if len(items) <= self.low_water and not self._room.is_set():
            self._room.set()
        return item

    def rest(self) -> list[Delivered]:
        """Everything not read yet (at shutdown: handed to the feed so nothing received is lost)."""
        rest = list(self._items)
        self._items.clear()
        self._room.set()
        return rest

    def health(self) -> dict[str, Any]:
        return {
            "queued": len(self._items),
            "high_water": self.high_water,
            "peak": self.peak,
            "received": self.received,
            "pauses": self.pauses,
        }
