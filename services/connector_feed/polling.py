"""``PollingConnector``: runs a seed-style ``ConnectorWrapper`` as a native connector.

For simple and third-party connectors (the seed's seven methods): connects and subscribes with
the shared reconnect policy, asks ``next_event()`` again at once while it returns events, and
waits CONNECTOR_POLL_INTERVAL_MS after it returns None - the only place that wait exists. Each
event goes to the feed as it comes (normalised there); ``deliver`` returns when the pipeline has
room, so a connector faster than publishing is simply asked less often. When the connection drops
or cannot be made, every symbol is reported ``reconnecting`` (or ``down`` when the policy gives
up) and, once it is back, ``live`` - unless the connector reports states of its own. A connector
whose ``next_event`` raises ``ConnectorGaveUp`` (it ran a reconnect policy of its own out) ends the
feed. At shutdown, what the connector still holds (``pending()``) is handed to the feed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas import Status
from services.common.logging import get_logger
from services.common.neterrors import describe_connect_error
from services.common.reconnect import Reconnector
from services.connector_feed.connector import (
    ConnectorCounters,
    ConnectorGaveUp,
    ConnectorWrapper,
    Delivered,
    FeedSink,
    NativeConnector,
)

log = get_logger("connector_feed")

#: How often (in events) the loop asks the connector ``is_connected()`` while events flow.
CHECK_CONNECTED_EVERY = 256


class PollingConnector(NativeConnector):
    def __init__(
        self,
        wrapped: ConnectorWrapper,
        symbols: list[str],
        reconnector: Reconnector,
        poll_interval_s: float,
        label: str = "hft",
    ) -> None:
        self.wrapped = wrapped
        self.exchange = wrapped.exchange
        self.symbols = symbols
        self.reconnector = reconnector
        self.poll_interval_s = poll_interval_s
        self.label = label
        self._instruments = wrapped.published_symbols() or list(symbols)
        self._connected = False
        self.gave_up = False
        self.connection_errors = 0
        self._own_states = False  # the connector reports Status changes itself
        self._announced: str | None = None  # the state we last reported for every symbol
        self._sink: FeedSink | None = None
        self._last_error: str | None = None  # why the last connect failed (cleared on connect)

    def instruments(self) -> list[str]:
        return list(self._instruments)

    def is_connected(self) -> bool:
        """Connected - by the connector's own account when it gives one: the seed's ``connected`` in
        ``get_health_status()`` (a connector keeping several connections of its own is connected
        only while all of them are up)."""
        if not self._connected:
            return False
        try:
            own = self.wrapped.get_health_status().get("connected")
        except Exception:  # a connector's health bug must not change ours
            return True
        return own is not False

    def health(self) -> dict[str, Any]:
        return self.wrapped.get_health_status()

    def reconnection_attempts(self) -> int:
        return self.reconnector.attempts

    def last_error(self) -> str | None:
        return None if self._connected else self._last_error

    def counters(self) -> ConnectorCounters:
        own = self.wrapped.counters() or ConnectorCounters()
        return ConnectorCounters(
            errors={**own.errors, "connection": self.connection_errors},
            reconnects=own.reconnects + self.reconnector.total_reconnects,
            resyncs=own.resyncs,
            gaps=own.gaps,
        )

    async def run(self, sink: FeedSink) -> None:
        self._sink = sink
        while True:
            await self._connect(sink)
            await self._read(sink)

    async def close(self) -> None:
        """Disconnect, then hand the feed what the connector still holds (published at shutdown)."""
        await self._disconnect()
        rest = self.wrapped.pending()
        if rest and self._sink is not None:
            self._sink.put(rest)

    async def _connect(self, sink: FeedSink) -> None:
        while True:
            try:
                await self.wrapped.connect()
                for symbol in self.symbols:
                    await self.wrapped.subscribe_trades(symbol)
                    await self.wrapped.subscribe_depth(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # connector supervisor boundary: transient
                self._connection_failed(error, attempt=self.reconnector.attempts + 1)
                await self._disconnect()
                if self._announced != "reconnecting" and not self._own_states:
                    await self._announce(sink, "reconnecting", f"cannot connect: {self._last_error}")
                await self._backoff(sink)
                continue
            self._connected = True
            self._last_error = None
            self.reconnector.connected()
            log.info(
                "connector_connected", connector=self.label, symbols=self.symbols, exchange=self.exchange
            )
            if self._announced is not None and not self._own_states:
                await self._announce(sink, "live", "reconnected")
            return

    def _connection_failed(self, error: Exception, **context: int) -> None:
        """A connect or read error: counted, kept as the cause health shows, logged."""
        self.connection_errors += 1
        self._last_error = describe_connect_error(error)
        log.warning(
            "connector_connection_error",
            connector=self.label,
            cause=self._last_error,
            error=repr(error),
            **context,
        )

    async def _read(self, sink: FeedSink) -> None:
        connector, deliver = self.wrapped, sink.deliver
        since_check = 0
        while True:
            try:
                event = await connector.next_event()
            except asyncio.CancelledError:
                raise
            except ConnectorGaveUp as error:  # it ran its own reconnect policy out: final
                self.gave_up = True
                log.error("connector_gave_up", connector=self.label, error=str(error))
                await self._announce(sink, "down", str(error))
                raise
            except Exception as error:
                self._connection_failed(error)
                break
            if event is None:
                if not await connector.is_connected():
                    break
                since_check = 0
                await asyncio.sleep(self.poll_interval_s)
                continue
            if type(event) is Status:
                self._own_states = True
            await deliver((event,))
            since_check += 1
            if since_check >= CHECK_CONNECTED_EVERY:
                since_check = 0
                if not await connector.is_connected():
                    break
        log.warning("connector_disconnected", connector=self.label)
        await self._announce(sink, "reconnecting", "connection to the venue lost; reconnecting")
        await self._disconnect()
        await self._backoff(sink)

    async def _backoff(self, sink: FeedSink) -> None:
        delay = self.reconnector.next_delay()
        if delay is None:
            self.gave_up = True
            log.error("connector_gave_up", connector=self.label, attempts=self.reconnector.attempts)
            because = f": {self._last_error}" if self._last_error else ""
            await self._announce(
                sink, "down", f"gave up after {self.reconnector.attempts} reconnect attempts{because}"
            )
            raise ConnectorGaveUp(
                f"connector {self.label!r} did not reconnect after {self.reconnector.attempts} attempts"
                + because
            )
        log.info(
            "connector_reconnecting",
            connector=self.label,
            attempt=self.reconnector.attempts,
            delay_s=round(delay, 3),
        )
        await asyncio.sleep(delay)

    async def _disconnect(self) -> None:
        self._connected = False
        try:
            await self.wrapped.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("connector_disconnect_error", connector=self.label, error=repr(error))

    async def _announce(self, sink: FeedSink, state: str, reason: str) -> None:
        """The connection as a whole changed state: one Status per symbol it publishes."""
        self._announced = state
        now = time.time_ns()
        batch: list[Delivered] = [
            Status(exchange=self.exchange, symbol=s, stream="all", state=state, reason=reason, ts=now)
            for s in sorted(self._instruments)
        ]
        await sink.deliver(batch)
