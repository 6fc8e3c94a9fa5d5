"""Test helpers: wait for a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    condition: Callable[[], object], timeout_s: float = 5.0, interval_s: float = 0.01
) -> None:
    """Wait until ``condition()`` is truthy (assertions inside it count as false) or fail."""
    deadline = time.monotonic() + timeout_s
    last_error: AssertionError | None = None
    while True:
        try:
            if condition():
                return
        except AssertionError as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s") from last_error
        await asyncio.sleep(interval_s)
