"""``ConnectorWrapper``: the plug-in point for exchange connectors (the seed's seven methods).

``next_event`` returns None (nothing yet: the feed polls again after CONNECTOR_POLL_INTERVAL_MS),
a ready ``TradeTick`` / ``DepthUpdate`` (published unchanged), or a dict in the seed's format::

    {"type": "trade", "symbol": "BTCUSDT", "timestamp": <datetime | int ms | int ns>,
     "price": 100.5, "qty": 0.5, "side": "buy", "is_buyer_maker": False, "id": 12345}
    {"type": "depth", "symbol": "BTCUSDT", "timestamp": ..., "bids": [(100.0, 1.0)],
     "asks": [(100.1, 2.0)], "last_update_id": 42,
     # optional: "is_snapshot" (default True), "first_update_id", "prev_last_update_id"}

``symbol`` is required when the connector serves several symbols; ``exchange`` defaults to the
connector's ``exchange`` attribute. Prices and quantities may be str, Decimal, int or float
(floats become decimals through their shortest repr).
"""

from __future__ import annotations

import abc
import importlib
from typing import Any

from schemas import DepthUpdate, Status, TradeTick
from services.connector_feed.events import Depth, Trade

#: What ``next_event`` may return: a contract, a seed-format dict, (in-house connectors whose
#: parser already validated everything) the feed's internal ``Trade`` / ``Depth``, or a
#: ``Status`` change, published on ``md.<SYMBOL>.status``.
ConnectorEvent = TradeTick | DepthUpdate | dict[str, Any] | Trade | Depth | Status


class ConnectorWrapper(abc.ABC):
    """Abstract exchange connector. Implementations take their settings in ``__init__``."""

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

    def is_resyncing(self) -> bool:
        """True while some book is being rebuilt (health then says ``degraded``). Optional."""
        return False

    def published_symbols(self) -> list[str] | None:
        """The instrument ids this connector publishes, if they differ from SYMBOLS. Optional."""
        return None

    def book_stats(self) -> dict[str, dict[str, int]]:
        """Per symbol, the connector's own book ``resyncs`` and ``gaps`` (for metrics). Optional."""
        return {}

    def error_counts(self) -> dict[str, int]:
        """Errors the connector absorbed, by kind (malformed frames, rate limits ...). Optional."""
        return {}


def import_connector_class(spec: str) -> type[ConnectorWrapper]:
    """Resolve ``package.module:ClassName`` to a ConnectorWrapper subclass (clear error otherwise)."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"connector {spec!r} is neither a built-in name nor 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import connector module {module_name!r}: {error}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ConnectorWrapper)):
        raise ValueError(f"{spec!r} is not a ConnectorWrapper subclass")
    return cls
