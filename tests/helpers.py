"""Test helpers: wait for a condition instead of sleeping; collect messages; run a feed stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.common.bus import Bus, settled
from services.common.reconnect import Reconnector, ReconnectPolicy
from services.connector_feed.connector import ConnectorWrapper, NativeConnector
from services.connector_feed.polling import PollingConnector
from services.connector_feed.stream import HFTConnectorStream


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


async def collect(nc: Client, subject: str) -> list[Msg]:
    """Subscribe (flushed, so nothing published after this returns is missed) and gather messages."""
    received: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        received.append(msg)

    await nc.subscribe(subject, cb=on_msg)
    await settled(nc)
    return received


def native(
    connector: ConnectorWrapper | NativeConnector,
    symbols: list[str],
    policy: ReconnectPolicy,
    label: str = "test",
) -> NativeConnector:
    """A native connector as is; a seed-style one run by the polling adapter (1 ms poll)."""
    if isinstance(connector, NativeConnector):
        return connector
    return PollingConnector(connector, symbols, Reconnector(policy), 0.001, label)


@asynccontextmanager
async def running_stream(
    connector: ConnectorWrapper | NativeConnector,
    nats_url: str,
    symbols: list[str],
    policy: ReconnectPolicy,
    label: str = "test",
    max_queue: int = 100_000,
) -> AsyncIterator[HFTConnectorStream]:
    """A feed stream (connector -> NATS) running for the block, then closed and drained."""
    bus = await Bus.connect(nats_url, f"test-{label}")
    stream = HFTConnectorStream(
        native(connector, symbols, policy, label), bus, max_queue, connector_label=label
    )
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.close()
        await bus.drain()


def without(data: bytes, *fields: str) -> dict[str, object]:
    """A published message as a dict without ``fields`` (e.g. ``feed_run``, new at every run)."""
    message = orjson.loads(data)
    assert isinstance(message, dict)
    return {k: v for k, v in message.items() if k not in fields}
