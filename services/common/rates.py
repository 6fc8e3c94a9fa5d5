"""Rolling event counts over the last minute, in one-second buckets (the seed's metrics shape)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RollingCounter:
    """Counts events per second for the last ``window_s`` seconds. ``add`` is O(1)."""

    def __init__(self, window_s: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        self._buckets = [0] * window_s
        self._stamps = [-1] * window_s
        self.total = 0

    def add(self, n: int = 1, now: float | None = None) -> None:
        second = int(self._clock() if now is None else now)
        i = second % self._window
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
