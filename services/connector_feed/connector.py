"""The connector seam: how exchange connectors hand market data to the feed.

Two kinds of connector plug in here:

- **Native connectors** (``NativeConnector``: Binance, the stub, the replays) push. They own their
  connections and, for each frame (or read) they get, hand every event parsed from it to the
  feed in one ``FeedSink.deliver`` call - which publishes at once when nothing is queued, and
  returns only when the pipeline has room, so a connector reads its socket no faster than the
  feed publishes (the kernel and the venue's buffers absorb bursts; nothing is dropped).
- **Polling connectors** (``ConnectorWrapper``: the seed's seven methods, for simple and
  third-party connectors) are driven by ``polling.PollingConnector``: it connects with the shared
  reconnect policy, calls ``next_event()`` and, when that returns None, waits
  CONNECTOR_POLL_INTERVAL_MS before asking again. That wait applies to them only.

**Recording and replay** plug in beside a native connector, not into its internals. A venue's
connector is three parts with narrow faces: its links (sockets), a *decoder* - ``on_frame(text,
ts_recv)`` and ``on_snapshot(symbol, snapshot)``, pure of I/O, the one place frames become events,
books and states - and a *recorder tap* (``frame(...)``, ``snapshot(...)``, ``close()``) that sees
every frame and REST body exactly as received. Recording is the tap (RECORD_DIR); replay
(``binance.replay``) reads the files back and drives the same decoder, with the recorded receipt
times, so a replay publishes what the live connector published. hftbacktest data
(``hftbacktest.decode``) is a native connector of its own.

``next_event`` returns None (nothing yet), a ready ``TradeTick`` / ``DepthUpdate`` (published
unchanged), a ``Status`` change, or a dict in the seed's format::

    {"type": "trade", "symbol": "BTCUSDT", "timestamp": <datetime | int ms | int ns>,
     "price": 100.5, "qty": 0.5, "side": "buy", "is_buyer_maker": False, "id": 12345}
    {"type": "depth", "symbol": "BTCUSDT", "timestamp": ..., "bids": [(100.0, 1.0)],
     "asks": [(100.1, 2.0)], "last_update_id": 42,
     # optional: "is_snapshot" (default True), "first_update_id", "prev_last_update_id"}

``symbol`` is required when the connector serves several symbols; ``exchange`` defaults to the
connector's ``exchange`` attribute; ``ts_recv`` (int ns, optional) is when the connector received
the event, when it knows better than the moment the feed asked for it. Prices and quantities may
be str, Decimal, int or float (floats become decimals through their shortest repr); every value
meets ``schemas.rules``.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import DepthUpdate, Status, TradeTick
from services.common.book import OrderBook
from services.connector_feed.events import Depth, Trade

#: What ``next_event`` may return: a contract, a seed-format dict, the feed's internal ``Trade`` /
#: ``Depth``, or a ``Status`` change, published on ``md.<SYMBOL>.status``.
ConnectorEvent = TradeTick | DepthUpdate | dict[str, Any] | Trade | Depth | Status
#: What a connector hands over: a native one, validated internal events and state changes; a
#: polling one, whatever ``next_event`` returned (normalised by the feed).
Delivered = ConnectorEvent


class ConnectorGaveUp(Exception):
    """The connector could not be (re)connected within the reconnect policy's attempts."""


class FeedSink(Protocol):
    """The feed, as a native connector sees it."""

    async def deliver(self, batch: Sequence[Delivered]) -> None:
        """Everything parsed from one frame, in order. Returns when the pipeline has room."""

    def put(self, batch: Sequence[Delivered]) -> bool:
        """The same without waiting (for code that cannot await: state changes, timers). Returns
        False when the pipeline is above its high-water mark: stop reading until ``room()``."""

    async def room(self) -> None:
        """Wait until the pipeline is below its low-water mark."""


class BookSource(Protocol):
    """A connector's own book of one symbol (one book per symbol in the feed)."""

    @property
    def synced(self) -> bool: ...

    @property
    def book(self) -> OrderBook: ...


@dataclass
class ConnectorCounters:
    """What a connector counted, for metrics (bounded labels: kinds and known symbols only)."""

    errors: dict[str, int] = field(default_factory=dict)  # malformed_<reason>, rest_errors ...
    reconnects: int = 0  # reconnects since start
    resyncs: dict[str, int] = field(default_factory=dict)  # symbol -> books rebuilt from the venue
    gaps: dict[str, int] = field(default_factory=dict)  # symbol -> sequence gaps at the venue


class NativeConnector(abc.ABC):
    """A push connector: owns its connections; hands each frame's events to the sink."""

    #: Exchange id published on every event.
    exchange: str = "unknown"

    @abc.abstractmethod
    def instruments(self) -> list[str]:
        """The instrument ids it publishes (``BTCUSDT``, ``BTCUSDT-PERP`` ...)."""

    @abc.abstractmethod
    async def run(self, sink: FeedSink) -> None:
        """Connect and deliver until cancelled; raise ``ConnectorGaveUp`` if it stops trying."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop quickly and lose nothing: deliver what was received, close connections
        concurrently, finish recordings. Safe to call twice."""

    @abc.abstractmethod
    def is_connected(self) -> bool:
        """Whether it is connected to its venue (or source)."""

    @abc.abstractmethod
    def health(self) -> dict[str, Any]:
        """Connector-specific health, shown as ``connector_health`` in the feed's health."""

    def counters(self) -> ConnectorCounters:
        """Errors, resyncs and gaps it counted (for metrics). Optional."""
        return ConnectorCounters()

    def reconnection_attempts(self) -> int:
        """Failed attempts in the current reconnect streak (health). Optional."""
        return 0

    def last_error(self) -> str | None:
        """Why it is not connected, while it is not: the last connect error in one line that names
        the host (``services.common.neterrors``); health's cause of ``down``. Optional."""
        return None

    def book(self, symbol: str) -> BookSource | None:
        """Its own book of ``symbol`` when it keeps one (the feed keeps it otherwise). Optional."""
        return None


class ConnectorWrapper(abc.ABC):
    """The seed's polling connector. Implementations take their settings in ``__init__``."""

    #: Exchange id published on every event that does not name its own.
    exchange: str = "unknown"

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise on failure (the feed retries with the reconnect policy)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close the connection; must be safe to call when not connected."""

    @abc.abstractmethod
    async def subscribe_trades(self, symbol: str) -> None:
        """Start delivering trades of ``symbol``."""

    @abc.abstractmethod
    async def subscribe_depth(self, symbol: str) -> None:
        """Start delivering order-book depth of ``symbol``."""

    @abc.abstractmethod
    async def next_event(self) -> ConnectorEvent | None:
        """The next event, or None when nothing is ready yet. Must not block for long."""

    @abc.abstractmethod
    async def is_connected(self) -> bool:
        """Whether the connection is up (checked by the feed's loop)."""

    @abc.abstractmethod
    def get_health_status(self) -> dict[str, Any]:
        """Connector-specific health, shown as ``connector_health`` in the feed's health reply."""

    def published_symbols(self) -> list[str] | None:
        """The instrument ids this connector publishes, if they differ from SYMBOLS. Optional."""
        return None

    def counters(self) -> ConnectorCounters | None:
        """Errors, resyncs and gaps it counted itself, for the feed's metrics. Optional."""
        return None

    def pending(self) -> list[ConnectorEvent]:
        """At shutdown, after ``disconnect()``: events received that ``next_event`` has not returned
        yet (the feed publishes them, so a connector that buffers loses nothing). Optional."""
        return []


def import_connector_class(spec: str) -> type[ConnectorWrapper | NativeConnector]:
    """Resolve ``package.module:ClassName`` to a connector class (clear error otherwise)."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"connector {spec!r} is neither a built-in name nor 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import connector module {module_name!r}: {error}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ConnectorWrapper | NativeConnector)):
        raise ValueError(f"{spec!r} is neither a ConnectorWrapper nor a NativeConnector subclass")
    return cls
