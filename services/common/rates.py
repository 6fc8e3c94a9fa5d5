"""Rolling event counts over the last minute, in one-second buckets (the seed's metrics shape)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping


class RollingCounter:
    """Counts events per second for the last ``window_s`` seconds. ``add`` is O(1)."""

    def __init__(self, window_s: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        self._buckets = [0] * window_s
        self._stamps = [-1] * window_s
        self._second = -1  # the second of the last add, and its bucket
        self._bucket = 0
        self.total = 0

    def add(self, n: int = 1, now: float | None = None) -> None:
        second = int(self._clock() if now is None else now)
        if second == self._second:  # the common case: the same second as the last add
            self._buckets[self._bucket] += n
            self.total += n
            return
        i = second % self._window
        self._second, self._bucket = second, i
        if self._stamps[i] != second:
            self._stamps[i] = second
            self._buckets[i] = 0
        self._buckets[i] += n
        self.total += n

    def count(self, now: float | None = None) -> int:
        """Events in the last ``window_s`` whole seconds, including the current one."""
        second = int(self._clock() if now is None else now)
        oldest = second - self._window + 1
        return sum(b for b, s in zip(self._buckets, self._stamps, strict=True) if s >= oldest)

    def rate(self, now: float | None = None) -> float:
        """Average events per second over the window."""
        return self.count(now) / self._window


def seed_metrics(
    trades: RollingCounter, depth: RollingCounter, queue_sizes: tuple[int, int]
) -> dict[str, dict[str, float | int]]:
    """The seed's metrics shape: per kind, per_minute_count, per_second_rate, queue_size."""
    return {
        name: {
            "per_minute_count": counter.count(),
            "per_second_rate": round(counter.rate(), 3),
            "queue_size": size,
        }
        for name, counter, size in (("trades", trades, queue_sizes[0]), ("depth", depth, queue_sizes[1]))
    }


class SampledRates:
    """Rolling counts fed from cumulative counters, sampled - never a call per event.

    ``sync`` adds what the counters gained since the last call to the current second: ``start``
    runs it once a second (a loop timer, not a task) and readers call it before reading, so an
    event lands in its own second or the next one. ``last_change`` is when a sync last saw a
    counter move: the time of the last event, to within a second (it never overstates the age).
    """

    def __init__(
        self,
        totals: Callable[[], Mapping[str, int]],
        kinds: tuple[str, ...] = ("trade", "depth"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._totals = totals
        self._clock = clock
        self.counters = {kind: RollingCounter(clock=clock) for kind in kinds}
        self._seen = dict.fromkeys(kinds, 0)
        self.last_change: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def sync(self) -> None:
        now = self._clock()
        totals = self._totals()
        for kind, counter in self.counters.items():
            new = totals[kind] - self._seen[kind]
            if new:
                counter.add(new, now)
                self._seen[kind] = totals[kind]
                self.last_change = now

    def start(self, every_s: float = 1.0) -> None:
        """Sync every ``every_s`` on the running loop until ``stop``."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.sync()
            self._timer = loop.call_later(every_s, tick)

        self.stop()
        self._timer = loop.call_later(every_s, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
