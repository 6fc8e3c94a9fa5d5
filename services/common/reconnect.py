"""The one reconnect policy every connector uses.

Delays double from ``initial_s`` up to ``max_s`` (0.5, 1, 2, 4, 8 s by default); after
``max_attempts`` failed attempts in a row (0 = never) the caller gives up. The attempt counter
resets only once a connection has stayed up ``reset_after_s`` - a connection that drops at once
does not earn a fresh, fast schedule, so a flapping venue cannot cause a reconnect storm.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.settings import ReconnectSettings


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    initial_s: float = 0.5
    max_s: float = 8.0
    max_attempts: int = 5
    jitter: bool = False
    reset_after_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: ReconnectSettings) -> ReconnectPolicy:
        return cls(
            initial_s=settings.reconnect_initial_s,
            max_s=settings.reconnect_max_s,
            max_attempts=settings.reconnect_max_attempts,
            jitter=settings.reconnect_jitter,
            reset_after_s=settings.reconnect_reset_after_s,
        )

    def delay(self, attempt: int) -> float:
        """Un-jittered delay before attempt number ``attempt`` (1-based)."""
        return float(min(self.initial_s * (2 ** max(attempt - 1, 0)), self.max_s))


class Reconnector:
    """Attempt bookkeeping for one connection, with an injectable clock and random source."""

    def __init__(
        self,
        policy: ReconnectPolicy,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._attempts = 0
        self._connected_since: float | None = None
        self.total_reconnects = 0

    @property
    def attempts(self) -> int:
        """Failed attempts in the current streak (0 once a connection has proved stable)."""
        if (
            self._connected_since is not None
            and self._clock() - self._connected_since >= self.policy.reset_after_s
        ):
            self._attempts = 0
        return self._attempts

    @property
    def exhausted(self) -> bool:
        return self.policy.max_attempts > 0 and self._attempts >= self.policy.max_attempts

    def connected(self) -> None:
        self._connected_since = self._clock()

    def disconnected(self) -> None:
        _ = self.attempts  # a long enough life resets the streak before we forget when it began
        self._connected_since = None

    def next_delay(self) -> float | None:
        """Count one more attempt and return how long to wait first; None when out of attempts."""
        self.disconnected()
        if self.exhausted:
            return None
        self._attempts += 1
        self.total_reconnects += 1
        delay = self.policy.delay(self._attempts)
        if self.policy.jitter:
            delay = self._rng.uniform(delay / 2, delay)
        return delay
