"""Hand-written connectors for tests (importable as ``tests.fakes:ClassName`` by CONNECTOR_NAME)."""

from __future__ import annotations

from collections import deque
from typing import Any

from services.connector_feed.connector import ConnectorEvent, ConnectorWrapper


class ScriptedConnector(ConnectorWrapper):
    """Plays a list of events; can fail its first connects and drop the connection mid-way."""

    exchange = "stub"

    def __init__(
        self,
        settings: Any = None,
        events: list[Any] | None = None,
        fail_connects: int = 0,
        drop_after: int | None = None,
    ) -> None:
        self.events: deque[Any] = deque(events or [])
        self.fail_connects = fail_connects
        self.drop_after = drop_after
        self.connect_calls = 0
        self.delivered = 0
        self.subscriptions: list[tuple[str, str]] = []
        self._connected = False

    async def connect(self) -> None:
        self.connect_calls += 1
        if self.connect_calls <= self.fail_connects:
            raise ConnectionRefusedError(f"scripted failure {self.connect_calls}")
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def subscribe_trades(self, symbol: str) -> None:
        self.subscriptions.append(("trades", symbol))

    async def subscribe_depth(self, symbol: str) -> None:
        self.subscriptions.append(("depth", symbol))

    async def next_event(self) -> ConnectorEvent | None:
        if self.drop_after is not None and self.delivered == self.drop_after:
            self.drop_after = None
            self._connected = False  # the venue hung up
            return None
        if not self.events:
            return None
        self.delivered += 1
        event: ConnectorEvent = self.events.popleft()
        return event

    async def is_connected(self) -> bool:
        return self._connected

    def get_health_status(self) -> dict[str, Any]:
        return {"connected": self._connected, "delivered": self.delivered}


class NeverConnects(ScriptedConnector):
    """For the give-up path of the real process."""

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings, fail_connects=10**9)
