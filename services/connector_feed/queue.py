"""What the feed's pipeline queues, and how it accounts for the one loss left.

The queue itself is a plain deque in ``stream``, bounded by backpressure (``deliver`` waits for
room). What can still be lost is a message NATS would not take (a publish that failed while the
server was unreachable past nats-py's buffer): ``Drops`` counts it by reason, for health's
``dropped`` and the ``md.events.dropped`` metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from schemas import Status
from services.connector_feed.events import Event, Trade

#: What the queue holds: market data, and the rare Status changes (never held back by the bound).
Queued = Event | Status


@dataclass
class Drops:
    trades: int = 0
    depth: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    #: (type, exchange, symbol, reason) -> count, for the md.events.dropped metric.
    by_key: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    #: Snapshots published to repair a lost depth message, per symbol (md.book.resyncs).
    resyncs: dict[str, int] = field(default_factory=dict)
    last_drop_monotonic: float | None = None

    def count(self, event: Event, reason: str, n: int = 1) -> None:
        kind = "trade" if type(event) is Trade else "depth"
        if kind == "trade":
            self.trades += n
        else:
            self.depth += n
        self.by_reason[reason] = self.by_reason.get(reason, 0) + n
        key = (kind, event.exchange, event.symbol, reason)
        self.by_key[key] = self.by_key.get(key, 0) + n
        self.last_drop_monotonic = time.monotonic()
