from __future__ import annotations

import random

from services.common.reconnect import Reconnector, ReconnectPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_default_schedule_doubles_to_the_cap_then_gives_up() -> None:
    reconnector = Reconnector(ReconnectPolicy())

    delays = [reconnector.next_delay() for _ in range(6)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, None]
    assert reconnector.exhausted


def test_cap_holds_and_zero_attempts_means_forever() -> None:
    reconnector = Reconnector(ReconnectPolicy(max_attempts=0))

    delays = [reconnector.next_delay() for _ in range(50)]

    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert set(delays[5:]) == {8.0}


def test_counter_resets_only_after_a_stable_connection() -> None:
    clock = FakeClock()
    reconnector = Reconnector(ReconnectPolicy(reset_after_s=30), clock=clock)
    assert reconnector.next_delay() == 0.5
    assert reconnector.next_delay() == 1.0

    reconnector.connected()
    clock.now += 1  # drops at once: no fresh start
    assert reconnector.next_delay() == 2.0

    reconnector.connected()
    clock.now += 31  # stayed up long enough
    assert reconnector.attempts == 0
    assert reconnector.next_delay() == 0.5


def test_jitter_stays_within_half_to_full_delay() -> None:
    reconnector = Reconnector(ReconnectPolicy(jitter=True, max_attempts=0), rng=random.Random(3))

    delays = [reconnector.next_delay() for _ in range(8)]
    nominal = [0.5, 1, 2, 4, 8, 8, 8, 8]

    assert all(d is not None and n / 2 <= d <= n for d, n in zip(delays, nominal, strict=True))
    assert len(set(delays)) == len(delays)
