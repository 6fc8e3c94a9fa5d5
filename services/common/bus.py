"""The NATS connection, wrapped once: bounded first connect, credentials and TLS, reconnect
callbacks, counted slow-consumer drops and permission violations, drain on stop.

nats-py's ``connect()`` retries for minutes against a down server, and forever after a TLS
verification failure (nats-io/nats.py#718), so the first connect is bounded here, and ends at once
when the server refuses our identity or the TLS handshake fails (retrying cannot fix either); once
connected, the client reconnects forever on its own. Slow-consumer drops and permission violations
are reported only through ``error_cb`` (the connection stays up), so they are counted here. No URL,
error or log line carries a credential (``services.common.natsauth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError

from services.common import delivery
from services.common.delivery import Batch, BatchingClient
from services.common.logging import LogSampler, get_logger
from services.common.natsauth import (
    NatsSecurity,
    describe_connect_failure,
    is_auth_failure,
    is_tls_failure,
    permission_violation,
    redact_url,
    scrub,
    servers,
)

log = get_logger(__name__)

MsgHandler = Callable[[Msg], Awaitable[None]]
#: nats-py's default bound on the bytes a subscription holds undelivered.
PENDING_BYTES_LIMIT = 64 * 1024 * 1024


async def settled(nc: Client, timeout_s: int = 2) -> None:
    """Return once the server has processed everything sent before (a subscription is live).

    ``nc.flush()`` alone does not promise it: nats-py writes its PING straight to the socket, ahead
    of commands still queued for its flusher task, so the PONG can come back before a SUB queued
    just before it was even sent. Let the flusher write the queue first, then round-trip."""
    deadline = time.monotonic() + timeout_s
    while nc.pending_data_size and time.monotonic() < deadline:  # noqa: ASYNC110 - nats-py has no event
        await asyncio.sleep(0)
    await nc.flush(timeout=timeout_s)


class BusConnectError(Exception):
    """The first connection to NATS could not be made in time."""


@dataclass
class BusStats:
    slow_consumer_drops: int = 0
    errors: int = 0
    disconnects: int = 0
    reconnects: int = 0
    #: Publishes/subscriptions the server refused (the connection stays up; nothing is delivered).
    permission_violations: int = 0
    last_permission_violation_monotonic: float | None = None


class Bus:
    """One NATS connection per service process."""

    def __init__(self, nc: Client, name: str, secrets: list[str] | None = None) -> None:
        self.nc = nc
        self.name = name
        self.stats = BusStats()
        self._secrets = secrets or []
        self._refused: asyncio.Future[BaseException] | None = None
        self._last_error: BaseException | None = None
        self._log_sampler = LogSampler()
        #: Called with a reason when messages may have been lost: a slow-consumer drop, a reconnect.
        self._loss_listeners: list[Callable[[str], None]] = []
        #: Batched subscriptions (``subscribe_batched``) and the tasks that drain them.
        self._batches: list[tuple[Subscription, Batch, asyncio.Task[None]]] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        timeout_s: float = 5.0,
        security: NatsSecurity | None = None,
        trusted_subjects: bool = False,
    ) -> Bus:
        """Connect within ``timeout_s`` or raise ``BusConnectError`` naming the (redacted) URL and why.

        ``trusted_subjects``: nats-py skips its per-publish subject check (a regex search, ~0.25 us):
        for a connection whose every subject is built by ``schemas.subjects`` from tokens that
        ``schemas.rules.symbol`` already checked (no whitespace, no CR/LF: nothing to inject)."""
        security = security or NatsSecurity()
        try:
            options = security.connect_options(url)
        except OSError as error:  # ssl.SSLError too: a key that does not match its certificate
            raise BusConnectError(f"cannot load the NATS TLS files: {error}") from None
        bus = cls(BatchingClient(), name, security.secrets(url))
        bus._refused = asyncio.get_running_loop().create_future()
        connecting = asyncio.ensure_future(
            bus.nc.connect(
                servers=servers(url),
                name=name,
                connect_timeout=min(2.0, timeout_s),  # type: ignore[arg-type]  # floats work; stubs say int
                reconnect_time_wait=0.5,  # type: ignore[arg-type]
                max_reconnect_attempts=-1,
                ping_interval=20,
                max_outstanding_pings=3,
                pending_size=8 * 1024 * 1024,
                skip_subject_validation=trusted_subjects,
                flush_timeout=5,
                drain_timeout=5,
                error_cb=bus._on_error,
                disconnected_cb=bus._on_disconnected,
                reconnected_cb=bus._on_reconnected,
                **options,
            )
        )
        try:
            waited: set[asyncio.Future[Any]] = {connecting, bus._refused}
            done, _ = await asyncio.wait(waited, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if connecting in done:
                connecting.result()
            else:
                cause = bus._refused.result() if bus._refused in done else bus._last_error
                raise BusConnectError(
                    f"cannot connect to NATS at {redact_url(url)} within {timeout_s:g}s: "
                    f"{describe_connect_failure(cause, bus._secrets)}"
                )
        except (OSError, nats.errors.Error) as error:
            reason = describe_connect_failure(error, bus._secrets)
            raise BusConnectError(f"cannot connect to NATS at {redact_url(url)}: {reason}") from None
        finally:
            bus._refused.cancel()
            if not connecting.done():
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
            if not bus.nc.is_connected:
                with contextlib.suppress(Exception):
                    await bus.nc.close()
        log.info(
            "nats_connected",
            server=bus.server,
            tls=security.tls_enabled(url),
            auth=security.auth_kind(url),
        )
        if security.plaintext_credentials(url):
            log.warning("nats_credentials_without_tls", server=bus.server)
        return bus

    @property
    def server(self) -> str | None:
        """``host:port`` of the server we are connected to (never the URL's user-info)."""
        url = self.nc.connected_url
        return None if url is None else f"{url.hostname}:{url.port}"

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        await self.nc.publish(subject, payload, headers=headers)

    async def subscribe(
        self, subject: str, handler: MsgHandler, queue: str = "", pending_msgs_limit: int = 524_288
    ) -> Subscription:
        """A ``cb=`` subscription (the fast path in nats-py; keep ``handler`` short). Past
        ``pending_msgs_limit`` undelivered messages nats-py drops (a slow consumer): counted, and
        reported to ``on_loss`` listeners."""
        return await self.nc.subscribe(
            subject, queue=queue, cb=handler, pending_msgs_limit=pending_msgs_limit
        )

    async def subscribe_batched(
        self, subject: str, handler: delivery.Handler, pending_msgs_limit: int = 524_288
    ) -> Subscription:
        """A hot subscription (market data): ``handler(subject, data, headers)`` is called for every
        message, in order, from a bounded batch drained by a task of the bus (``delivery``: about
        half nats-py's cost per message). Past ``pending_msgs_limit`` waiting messages the arriving
        one is dropped: a slow consumer, counted and reported to ``on_loss`` listeners as nats-py's
        own would be. Falls back to a plain ``cb=`` subscription where ``delivery`` is unsupported."""
        limit, bytes_limit = pending_msgs_limit, PENDING_BYTES_LIMIT
        batch = Batch(handler, self._slow_consumer, self._handler_failed, limit, bytes_limit)

        async def callback(msg: Msg) -> None:  # the fallback (and any message before registration)
            batch.put(msg.subject, msg.data, msg.headers)

        sub = await self.nc.subscribe(
            subject, cb=callback, pending_msgs_limit=limit, pending_bytes_limit=bytes_limit
        )
        if isinstance(self.nc, BatchingClient) and delivery.supported():
            self.nc.batches[sub._id] = batch
        elif self._log_sampler.allow("unbatched") is not None:
            log.warning("nats_batched_delivery_unavailable", subject=subject)
        task = asyncio.get_running_loop().create_task(batch.run(), name=f"batch-{subject}")
        self._batches.append((sub, batch, task))
        return sub

    def _handler_failed(self, error: Exception) -> None:
        self.stats.errors += 1
        if self._log_sampler.allow("handler_failed") is not None:
            log.error("nats_handler_failed", error=scrub(repr(error), self._secrets))

    async def _drain_batches(self, timeout_s: float = 5.0) -> None:
        """Stop the batched subscriptions, hand on what the server sent before, stop their tasks."""
        batches, self._batches = self._batches, []
        for sub, _, _ in batches:
            with contextlib.suppress(Exception):  # gone already with the connection: nothing to stop
                await sub.unsubscribe()
        if timeout_s > 0:  # 0: closed or disconnected, nothing more can arrive
            with contextlib.suppress(Exception):
                await settled(self.nc, timeout_s=max(1, int(timeout_s)))  # all sent before the UNSUB is here
        for _, batch, _ in batches:
            await batch.drained(timeout_s)
        for sub, _, task in batches:
            task.cancel()
            if isinstance(self.nc, BatchingClient):
                self.nc.batches.pop(sub._id, None)
        await asyncio.gather(*(task for _, _, task in batches), return_exceptions=True)

    async def request(self, subject: str, payload: bytes = b"", timeout_s: float = 1.0) -> Msg:
        return await self.nc.request(subject, payload, timeout=timeout_s)

    async def drain(self) -> None:
        """Finish in-flight messages, flush publishes, close. Safe to call twice."""
        if self.nc.is_closed:
            await self._drain_batches(timeout_s=0)
            return
        if self.nc.is_connected:
            await self._drain_batches()
        else:  # nothing can be flushed to a server we cannot reach
            await self._drain_batches(timeout_s=0)
            await self.nc.close()
            return
        try:
            await self.nc.drain()
        except Exception as error:  # shutdown boundary: never let a failed drain block exit
            log.warning("nats_drain_failed", error=repr(error))
            await self.nc.close()

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        if (
            self._refused is not None
            and not self._refused.done()
            and (is_auth_failure(error) or is_tls_failure(error))
        ):
            self._refused.set_result(error)  # the first connect: retrying will not help
        violation = permission_violation(error)
        if violation is not None:
            self._count_violation(*violation)
            return
        if isinstance(error, SlowConsumerError):
            self._slow_consumer(error.subject)
            return
        self.stats.errors += 1
        suppressed = self._log_sampler.allow(type(error).__name__)
        if suppressed is not None:  # an outage can raise thousands: a sample per kind, with counts
            log.warning(
                "nats_error",
                error=scrub(repr(error), self._secrets),
                errors=self.stats.errors,
                suppressed=suppressed,
            )

    def _slow_consumer(self, subject: str) -> None:
        """A message dropped because its subscription had too many waiting: counted, reported."""
        self.stats.slow_consumer_drops += 1
        self._lost("slow_consumer")
        drops = self.stats.slow_consumer_drops
        if drops in (1, 10, 100, 1000) or drops % 10000 == 0:
            log.warning("nats_slow_consumer", subject=subject, dropped=drops)

    def _count_violation(self, operation: str, subject: str) -> None:
        """Counted, logged as a sample (1st, 10th, 100th, ...), never fatal."""
        stats = self.stats
        stats.permission_violations += 1
        stats.last_permission_violation_monotonic = time.monotonic()
        n = stats.permission_violations
        if n in (1, 10, 100, 1000) or n % 10000 == 0:
            log.warning("nats_permission_violation", operation=operation, subject=subject, violations=n)

    async def _on_disconnected(self) -> None:
        self.stats.disconnects += 1
        if not self.nc.is_closed and not self.nc.is_draining:
            log.warning("nats_disconnected")

    def on_loss(self, listener: Callable[[str], None]) -> None:
        """``listener(reason)`` whenever messages may have been lost (``slow_consumer``,
        ``reconnected``): whoever keeps state from a stream must treat it as a gap."""
        self._loss_listeners.append(listener)

    def _lost(self, reason: str) -> None:
        for listener in self._loss_listeners:
            try:
                listener(reason)
            except Exception as error:  # a listener's bug must not break the connection's callbacks
                log.warning("nats_loss_listener_failed", error=repr(error))

    async def _on_reconnected(self) -> None:
        self.stats.reconnects += 1
        self._lost("reconnected")
        log.info("nats_reconnected", server=self.server)


__all__ = ["Bus", "BusConnectError", "BusStats", "Msg", "MsgHandler", "NatsSecurity"]
