"""The NATS connection, wrapped once: bounded first connect, reconnect callbacks, counted
slow-consumer drops, drain on stop.

nats-py's ``connect()`` retries for minutes against a down server, so the first connect is
bounded here; once connected, the client reconnects forever on its own. Slow-consumer drops are
reported only through ``error_cb`` (once per dropped message), so they are counted here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError

from services.common.logging import get_logger

log = get_logger(__name__)

MsgHandler = Callable[[Msg], Awaitable[None]]


class BusConnectError(Exception):
    """The first connection to NATS could not be made in time."""


@dataclass
class BusStats:
    slow_consumer_drops: int = 0
    errors: int = 0
    disconnects: int = 0
    reconnects: int = 0


class Bus:
    """One NATS connection per service process."""

    def __init__(self, nc: Client, name: str) -> None:
        self.nc = nc
        self.name = name
        self.stats = BusStats()

    @classmethod
    async def connect(cls, url: str, name: str, timeout_s: float = 5.0) -> Bus:
        """Connect within ``timeout_s`` or raise ``BusConnectError`` naming the URL."""
        bus = cls(Client(), name)
        servers = [u.strip() for u in url.split(",") if u.strip()]
        try:
            await asyncio.wait_for(
                bus.nc.connect(
                    servers=servers,
                    name=name,
                    connect_timeout=min(2.0, timeout_s),  # type: ignore[arg-type]  # floats work; stubs say int
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    ping_interval=20,
                    max_outstanding_pings=3,
                    pending_size=8 * 1024 * 1024,
                    flush_timeout=5,
                    drain_timeout=5,
                    error_cb=bus._on_error,
                    disconnected_cb=bus._on_disconnected,
                    reconnected_cb=bus._on_reconnected,
                ),
                timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as error:
            raise BusConnectError(
                f"cannot connect to NATS at {url} within {timeout_s:g}s: {error!r}"
            ) from None
        log.info("nats_connected", url=bus.nc.connected_url.netloc if bus.nc.connected_url else url)
        return bus

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        await self.nc.publish(subject, payload, headers=headers)

    async def subscribe(self, subject: str, handler: MsgHandler, queue: str = "") -> Subscription:
        """A ``cb=`` subscription (the fast path in nats-py; keep ``handler`` short)."""
        return await self.nc.subscribe(subject, queue=queue, cb=handler)

    async def request(self, subject: str, payload: bytes = b"", timeout_s: float = 1.0) -> Msg:
        return await self.nc.request(subject, payload, timeout=timeout_s)

    async def drain(self) -> None:
        """Finish in-flight messages, flush publishes, close. Safe to call twice."""
        if self.nc.is_closed:
            return
        if not self.nc.is_connected:  # nothing can be flushed to a server we cannot reach
            await self.nc.close()
            return
        try:
            await self.nc.drain()
        except Exception as error:  # shutdown boundary: never let a failed drain block exit
            log.warning("nats_drain_failed", error=repr(error))
            await self.nc.close()

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            self.stats.slow_consumer_drops += 1
            if (
                self.stats.slow_consumer_drops in (1, 10, 100, 1000)
                or self.stats.slow_consumer_drops % 10000 == 0
            ):
                log.warning(
                    "nats_slow_consumer", subject=error.subject, dropped=self.stats.slow_consumer_drops
                )
            return
        self.stats.errors += 1
        log.warning("nats_error", error=repr(error))

    async def _on_disconnected(self) -> None:
        self.stats.disconnects += 1
        if not self.nc.is_closed and not self.nc.is_draining:
            log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        self.stats.reconnects += 1
        log.info("nats_reconnected", url=self.nc.connected_url.netloc if self.nc.connected_url else None)


__all__ = ["Bus", "BusConnectError", "BusStats", "Msg", "MsgHandler"]
