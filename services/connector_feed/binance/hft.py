"""``BinanceHFTConnector`` (``CONNECTOR_NAME=binance_hft``): the seed's connector, on our Binance client.

The seed's guide shows ``BinanceHFTConnector`` wrapping ``hftbacktest.BinanceLiveWrapper``; that
class never existed (hftbacktest has no Python live API). This is the same pattern - the seed's
seven ``ConnectorWrapper`` methods, the seed's event dicts through ``next_event`` - with our own
Binance client underneath: ``BinanceConnector`` (links, supervisor, decoder, syncer) runs as
usual and pushes each frame's events into a ``Handoff``; ``next_event`` takes them out in order as
seed dicts (``seed_format``), so the feed publishes exactly what ``DATA_SOURCE=binance_ws`` would
on the same frames, books included (the feed keeps them from the dicts' update ids).

- ``connect()`` starts the client (it reconnects its own connections, make-before-break, and
  reports each symbol's state, so the feed's polling loop never tears it down for a dropped link);
  ``subscribe_trades`` / ``subscribe_depth`` choose which of its events are passed on.
- ``next_event()`` waits for the next event (the client pushes: no polling delay, and
  CONNECTOR_POLL_INTERVAL_MS never applies while it runs); it returns None only once the client
  has stopped, and raises what stopped it (``ConnectorGaveUp`` ends the feed, as for binance_ws).
- **Market data only.** There is no order path: no method here or in the client can place,
  change or cancel an order, the client holds no API key and calls only the public depth
  endpoint. ``paper_trading`` must be True (CONNECTOR_PAPER_TRADING=false is refused at start-up).
"""

from __future__ import annotations

import asyncio
from typing import Any

from schemas import Status
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.parse import EXCHANGE, instrument_id
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.connector import (
    ConnectorCounters,
    ConnectorEvent,
    ConnectorGaveUp,
    ConnectorWrapper,
)
from services.connector_feed.events import Depth, Trade
from services.connector_feed.handoff import Handoff
from services.connector_feed.seed_format import depth_event, trade_event


class BinanceHFTConnector(ConnectorWrapper):
    def __init__(
        self,
        settings: BinanceSettings,
        policy: ReconnectPolicy | None = None,
        max_queue: int = 10_000,
        paper_trading: bool = True,
    ) -> None:
        if not paper_trading:
            raise ValueError("binance_hft is market data only: paper_trading must be True")
        self.paper_trading = True
        self.settings = settings
        self.policy = policy
        self.max_queue = max_queue
        market = settings.binance_market
        self.exchange = EXCHANGE[market]
        self.instrument_of = {v: instrument_id(v, market) for v in settings.symbols}
        self.trades_on: set[str] = set()  # instrument ids whose trades are passed on
        self.depth_on: set[str] = set()
        self.skipped = 0  # events of a kind nobody subscribed to
        self._client: BinanceConnector | None = None
        self._handoff: Handoff | None = None
        self._task: asyncio.Task[None] | None = None
        self._retired = ConnectorCounters()  # what clients before the current one counted

    # ---- the seed's seven methods --------------------------------------------------------------

    async def connect(self) -> None:
        if self._task is not None:
            return
        client = self._client = BinanceConnector(self.settings, self.policy)
        handoff = self._handoff = Handoff(self.max_queue)
        task = self._task = asyncio.create_task(client.run(handoff), name="binance-hft-client")
        task.add_done_callback(lambda _: handoff.close())

    async def disconnect(self) -> None:
        """Stop the client, then close its connections, as the feed stops ``binance_ws`` (what it
        received stays readable: ``pending``)."""
        client, task = self._client, self._task
        if client is None or task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await client.close()
        finally:
            # Counters stay monotonic across clients: a closed client's totals are kept.
            self._retired = _sum(self._retired, client.counters())
            self._client = self._task = None

    async def subscribe_trades(self, symbol: str) -> None:
        self.trades_on.add(self._instrument(symbol))

    async def subscribe_depth(self, symbol: str) -> None:
        self.depth_on.add(self._instrument(symbol))

    async def next_event(self) -> ConnectorEvent | None:
        handoff = self._handoff
        if handoff is None:
            return None
        while True:
            item = await handoff.get()
            if item is None:  # the client stopped: say why (None when it was closed on purpose)
                task = self._task
                if task is not None and task.done() and not task.cancelled():
                    error = task.exception()
                    if error is not None:
                        raise _cause(error)
                return None
            event = self._seed(item)
            if event is not None:
                return event

    async def is_connected(self) -> bool:
        """Whether the client is running or its events are still being read (it keeps its own
        connections; each symbol's state is published as it changes, and ``get_health_status``
        shows every connection)."""
        handoff = self._handoff
        return handoff is not None and self._task is not None and (not handoff.closed or len(handoff) > 0)

    def get_health_status(self) -> dict[str, Any]:
        client = self._client
        own: dict[str, Any] = {"connected": False} if client is None else client.health()
        return {
            **own,
            "paper_trading": True,
            "orders": "none: market data only",
            "subscribed_trades": sorted(self.trades_on),
            "subscribed_depth": sorted(self.depth_on),
            "handoff": None if self._handoff is None else self._handoff.health(),
            "skipped_unsubscribed": self.skipped,
        }

    # ---- optional parts of the interface -------------------------------------------------------

    def published_symbols(self) -> list[str]:
        return list(self.instrument_of.values())

    def counters(self) -> ConnectorCounters:
        client = self._client
        return self._retired if client is None else _sum(self._retired, client.counters())

    def pending(self) -> list[ConnectorEvent]:
        handoff = self._handoff
        if handoff is None:
            return []
        return [event for event in map(self._seed, handoff.rest()) if event is not None]

    # ---- helpers -------------------------------------------------------------------------------

    def _seed(self, item: object) -> ConnectorEvent | None:
        """A client event as the seed's dict (a Status as is); None for a kind not subscribed."""
        kind = type(item)
        if kind is Trade:
            trade: Trade = item  # type: ignore[assignment]
            if trade.symbol in self.trades_on:
                return trade_event(trade)
        elif kind is Depth:
            depth: Depth = item  # type: ignore[assignment]
            if depth.symbol in self.depth_on:
                return depth_event(depth)
        elif kind is Status:
            return item  # type: ignore[return-value]
        self.skipped += 1
        return None

    def _instrument(self, symbol: str) -> str:
        instrument = self.instrument_of.get(symbol.upper())
        if instrument is None:
            raise ValueError(f"{symbol!r} is not one of SYMBOLS {sorted(self.instrument_of)}")
        return instrument


def _cause(error: BaseException) -> BaseException:
    """What stopped the client, out of its task groups: ``ConnectorGaveUp`` if it gave up."""
    if isinstance(error, BaseExceptionGroup):
        gave_up = error.subgroup(ConnectorGaveUp)
        return _cause((gave_up or error).exceptions[0])
    return error


def _sum(a: ConnectorCounters, b: ConnectorCounters) -> ConnectorCounters:
    def add(x: dict[str, int], y: dict[str, int]) -> dict[str, int]:
        return {k: x.get(k, 0) + y.get(k, 0) for k in x.keys() | y.keys()}

    return ConnectorCounters(
        errors=add(a.errors, b.errors),
        reconnects=a.reconnects + b.reconnects,
        resyncs=add(a.resyncs, b.resyncs),
        gaps=add(a.gaps, b.gaps),
    )
