"""Stale streams: reported, then repaired, without touching healthy streams.

Every CHECK_EVERY_S the symbol states flag streams silent past their threshold (``stale``, published
at once). A stale depth stream's connection is replaced make-before-break (the replacement is not
made to wait for the silent stream); a stale trade stream is resubscribed on its connection. While
a stream stays silent the repair is tried again, each time after twice the previous wait (from the
stream's threshold up to MAX_REPAIR_WAIT_S): a quiet symbol does not churn its connection.
"""

from __future__ import annotations

import asyncio
import time

from services.common.logging import get_logger
from services.connector_feed.binance.status import Stream, SymbolStates
from services.connector_feed.binance.supervisor import LinkSupervisor
from services.connector_feed.connector import FeedSink

log = get_logger("binance")

CHECK_EVERY_S = 0.1
MAX_REPAIR_WAIT_S = 300.0


class StreamWatch:
    def __init__(self, states: SymbolStates, supervisor: LinkSupervisor, venue_of: dict[str, str]) -> None:
        self.states = states
        self.supervisor = supervisor
        self.venue_of = venue_of  # instrument id -> venue symbol
        self.repairs = 0
        self._next: dict[tuple[str, Stream], tuple[float, float]] = {}  # stale stream -> (due, next wait)

    async def run(self, sink: FeedSink) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            changes = self.states.check()
            for status in changes:
                log.warning(
                    "binance_stream_stale", symbol=status.symbol, stream=status.stream, reason=status.reason
                )
            if changes:
                await sink.deliver(changes)
            self.repair_due(time.monotonic())

    def repair_due(self, now: float) -> None:
        stale = self.states.stale
        for key in [k for k in self._next if k not in stale]:  # flowing again: the next repair is at once
            del self._next[key]
        for key in list(stale):
            due, wait = self._next.get(key, (0.0, self.states.threshold_s(key[1])))
            if now < due:
                continue
            self._next[key] = (now + wait, min(2 * wait, MAX_REPAIR_WAIT_S))
            self.repair(*key)

    def repair(self, symbol: str, stream: Stream) -> None:
        prefix = f"{self.venue_of[symbol].lower()}@"
        supervisor = self.supervisor
        names = [
            s
            for link in supervisor.links
            for s in link.streams
            if s.startswith(prefix) and ("@depth" in s) == (stream == "depth")
        ]
        self.repairs += 1
        for name in names:
            link = supervisor.link_of(name)
            if link is None:
                continue
            if stream == "depth":
                supervisor.replace(link, f"stale {name}", ignore=frozenset(names))
            else:
                supervisor.resubscribe(name)
