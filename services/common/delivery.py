"""Batched delivery for hot subscriptions: nats-py's per-message machinery skipped, nothing else.

For a ``cb=`` subscription nats-py passes every message through a coroutine, a header parse, a
``Msg`` object, an ``asyncio.Queue`` and a task wake-up before the callback runs: ~3.7 µs a
message on our 2-vCPU bench host, more than everything a consumer does with it. For the
market-data subjects ``Bus.subscribe_batched`` uses this module instead: ``BatchingClient`` (the
``nats.aio.client.Client`` every ``Bus`` connects with) takes the messages of such a subscription
where nats-py would queue them, and appends ``(subject, data, headers)`` to the subscription's
``Batch``, a bounded deque that one task drains, calling a plain synchronous handler (~1.7 µs
from the socket's bytes to the handler).

What stays as nats-py does it:
- order: every message of the subscription, with headers or without, takes the same path;
- the bound: past ``pending_msgs_limit`` messages or ``pending_bytes_limit`` bytes waiting, the
  arriving message is dropped and reported to ``on_overflow`` (``Bus`` counts it as a
  slow-consumer drop and tells its loss listeners: every book resyncs);
- the subscription itself: a normal nats-py ``Subscription`` stays registered (SUB again after a
  reconnect, UNSUB, drain), and the connection's ``in_msgs`` / ``in_bytes`` stats.

It relies on one nats-py internal: ``Client._process_msg(sid, subject, reply, data, headers)``,
which the protocol parser awaits for every MSG / HMSG (and ``_process_headers`` for the headers of
those few that carry any). ``supported()`` checks both before a batched subscription is made; if a
nats-py release changes them, ``Bus`` falls back to a plain ``cb=`` subscription (the same
behaviour, slower) and logs it once. ``tests/test_delivery.py`` fails if the installed nats-py is
not supported, so an upgrade cannot make it slow unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

#: (subject, data, headers or None) -> True when the handler's downstream is full (the batch
#: then yields to the loop at once, so the consumers of that downstream run).
Handler = Callable[[str, bytes, "dict[str, str] | None"], bool]
#: Messages handled in a row before the draining task yields to the loop.
BATCH = 256
_EXPECTED = ["sid", "subject", "reply", "data", "headers"]


def supported() -> bool:
    """The nats-py internals this module intercepts are there, with the expected shape."""
    process = getattr(Client, "_process_msg", None)
    headers = getattr(Client, "_process_headers", None)
    if not (inspect.iscoroutinefunction(process) and inspect.iscoroutinefunction(headers)):
        return False
    return list(inspect.signature(process).parameters)[1:] == _EXPECTED


class Batch:
    """The messages of one subscription waiting for its handler: bounded, drained by one task."""

    def __init__(
        self,
        handler: Handler,
        on_overflow: Callable[[str], None],
        on_error: Callable[[Exception], None],
        msgs_limit: int,
        bytes_limit: int,
    ) -> None:
        self.handler = handler
        self.on_overflow = on_overflow
        self.on_error = on_error
        self.msgs_limit = msgs_limit
        self.bytes_limit = bytes_limit  # 0: no limit
        self.items: deque[tuple[str, bytes, dict[str, str] | None]] = deque()
        self.pending_bytes = 0
        self.delivered = 0
        self.dropped = 0
        self._ready = asyncio.Event()
        self._waiting = False
        self._empty: asyncio.Event | None = None  # set when the deque empties (``drained``)

    def put(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        size = len(data)
        if len(self.items) >= self.msgs_limit or (
            self.bytes_limit and self.pending_bytes + size > self.bytes_limit
        ):
            self.dropped += 1
            self.on_overflow(subject)
            return
        self.items.append((subject, data, headers))
        self.pending_bytes += size
        if self._waiting:
            self._waiting = False
            self._ready.set()

    async def run(self) -> None:
        """Hand every message to the handler, in order, ``BATCH`` at a time (then yield)."""
        items, handler = self.items, self.handler
        while True:
            if not items:
                if self._empty is not None:
                    self._empty.set()
                self._ready.clear()
                self._waiting = True
                await self._ready.wait()
            for _ in range(min(len(items), BATCH)):
                subject, data, headers = items.popleft()
                self.pending_bytes -= len(data)
                self.delivered += 1
                try:
                    pressed = handler(subject, data, headers)
                except Exception as error:  # per-message boundary (handlers keep their own)
                    self.on_error(error)
                    continue
                if pressed:
                    break
            await asyncio.sleep(0)

    async def drained(self, timeout_s: float) -> bool:
        """Wait until nothing is waiting (at most ``timeout_s``); True if drained."""
        if self.items and timeout_s > 0:
            self._empty = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout_s)
            self._empty = None
        return not self.items


class BatchingClient(Client):
    """A nats-py ``Client`` that hands the messages of batched subscriptions to their ``Batch``."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: dict[int, Batch] = {}

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        batch = self.batches.get(sid)
        if batch is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        batch.put(subject.decode(), data, await self._process_headers(headers) if headers else None)
