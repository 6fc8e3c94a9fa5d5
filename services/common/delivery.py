"""Batched delivery for hot subscriptions: nats-py's per-message machinery skipped, nothing else.

For a ``cb=`` subscription nats-py matches each message's control line with a regular expression,
copies it out of a ``bytearray``, awaits a coroutine, builds a ``Msg``, puts it on an
``asyncio.Queue`` and wakes a task before the callback runs: ~3.7 µs a message on our 2-vCPU bench
host, more than everything a consumer does with it. For the market-data subjects
``Bus.subscribe_batched`` uses this module instead (~1.4 µs from the socket's bytes to the handler):

- ``BatchingParser`` reads the runs of ``MSG`` / ``HMSG`` frames of batched subscriptions straight
  from each chunk the socket gives (``bytes.find`` / ``split``, one slice per payload) and appends
  ``(subject, data, headers)`` to the subscription's ``Batch``; anything else (another
  subscription's message, PING, INFO, -ERR, a frame it does not recognise) goes, with the rest of
  the chunk, to nats-py's own parser, which does what it always does;
- ``BatchingClient`` (the ``nats.aio.client.Client`` every ``Bus`` connects with) does the same for
  the messages of batched subscriptions that nats-py's parser hands it;
- a ``Batch`` is a bounded deque that one task drains, calling a plain synchronous handler.

What stays as nats-py does it:
- order: every frame is handled where it stands in the stream, by one parser or the other;
- the bound: past ``pending_msgs_limit`` messages or ``pending_bytes_limit`` bytes waiting, the
  arriving message is dropped and reported to ``on_overflow`` (``Bus`` counts it as a
  slow-consumer drop and tells its loss listeners: every book resyncs);
- the subscription itself: a normal nats-py ``Subscription`` stays registered (SUB again after a
  reconnect, UNSUB, drain), and the connection's ``in_msgs`` / ``in_bytes`` stats.

It relies on nats-py internals: the parser the client keeps in ``_ps`` (``Parser``: its ``buf`` and
``state``), ``Client._process_msg(sid, subject, reply, data, headers)`` and
``Client._process_headers``. ``supported()`` checks them before a batched subscription is made; if a
nats-py release changes them, ``Bus`` falls back to a plain ``cb=`` subscription (the same
behaviour, slower) and logs it once. ``tests/test_delivery.py`` fails if the installed nats-py is
not supported, so an upgrade cannot make it slow unnoticed, and checks the parser against
nats-py's own on arbitrary streams cut at arbitrary places.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.protocol import parser as nats_parser
from nats.protocol.parser import Parser

#: (subject, data, headers or None) -> True when the handler's downstream is full (the batch
#: then yields to the loop at once, so the consumers of that downstream run).
Handler = Callable[[str, bytes, "dict[str, str] | None"], bool]
#: Messages handled in a row before the draining task yields to the loop.
BATCH = 256
_EXPECTED = ["sid", "subject", "reply", "data", "headers"]


def supported() -> bool:
    """The nats-py internals this module relies on are there, with the expected shape."""
    process = getattr(Client, "_process_msg", None)
    headers = getattr(Client, "_process_headers", None)
    if not (inspect.iscoroutinefunction(process) and inspect.iscoroutinefunction(headers)):
        return False
    if list(inspect.signature(process).parameters)[1:] != _EXPECTED:
        return False
    probe = Parser()
    return (
        isinstance(getattr(probe, "buf", None), bytearray)
        and getattr(probe, "state", None) == getattr(nats_parser, "AWAITING_CONTROL_LINE", object())
        and isinstance(getattr(nats_parser, "MAX_CONTROL_LINE_SIZE", None), int)
    )


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
        if supported() and isinstance(getattr(self, "_ps", None), Parser):
            self._ps = BatchingParser(self)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        batch = self.batches.get(sid)
        if batch is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        batch.put(subject.decode(), data, await self._process_headers(headers) if headers else None)


class BatchingParser(Parser):
    """nats-py's protocol parser, with a fast path for the frames of batched subscriptions."""

    def __init__(self, nc: BatchingClient) -> None:
        super().__init__(nc)
        self._batches = nc.batches
        self._client = nc

    async def parse(self, data: bytes = b"") -> None:
        if self.state != nats_parser.AWAITING_CONTROL_LINE:  # nats-py's parser is inside a frame
            await super().parse(data)
            return
        if self.buf:  # what nats-py's parser (or this one) kept of a frame cut by the last chunk
            data = bytes(self.buf) + data
            self.buf.clear()
        position, end = 0, len(data)
        while position < end:
            position = await self._batched(data, position)
            if position >= end:
                return
            frame_end = _frame_end(data, position)
            if frame_end < 0:  # cut, or not understood: nats-py's parser takes the rest
                await super().parse(data[position:])
                return
            await super().parse(data[position:frame_end])  # one frame that is not ours
            if self.state != nats_parser.AWAITING_CONTROL_LINE or self.buf:
                await super().parse(data[frame_end:])
                return
            position = frame_end

    async def _batched(self, data: bytes, position: int) -> int:
        """Hand on the frames of batched subscriptions from ``position``; where the first other
        frame starts (or ``len(data)``, a cut frame kept in ``buf`` for the next chunk)."""
        batches, end = self._batches, len(data)
        messages = size = 0  # the connection's stats, added once a chunk
        try:
            while position < end:
                headers = not data.startswith(b"MSG ", position)
                if headers and not data.startswith(b"HMSG ", position):
                    return position
                line_end = data.find(b"\r\n", position, position + nats_parser.MAX_CONTROL_LINE_SIZE)
                if line_end < 0:
                    return self._keep(data, position)
                args = data[position + (5 if headers else 4) : line_end].split(b" ")
                if not (3 + headers <= len(args) <= 4 + headers and args[-1].isdigit() and args[1].isdigit()):
                    return position  # a shape nats-py's parser decides about
                batch = batches.get(int(args[1]))
                if batch is None:
                    return position
                start, stop = line_end + 2, line_end + 2 + int(args[-1])
                if stop + 2 > end:
                    return self._keep(data, position)
                if headers:
                    split = start + int(args[-2]) if args[-2].isdigit() else -1
                    if not start <= split <= stop:
                        return position
                    found = await self._client._process_headers(data[start:split])
                    batch.put(args[0].decode(), data[split:stop], found)
                    size += stop - split
                else:
                    batch.put(args[0].decode(), data[start:stop], None)
                    size += stop - start
                messages += 1
                position = stop + 2
            return position
        finally:
            stats = self._client.stats
            stats["in_msgs"] += messages
            stats["in_bytes"] += size

    def _keep(self, data: bytes, position: int) -> int:
        """A batched frame cut by the end of the chunk: kept for the next one (a control line
        longer than the protocol allows is left to nats-py's parser, which reports it)."""
        if data.find(b"\r\n", position) < 0 and len(data) - position >= nats_parser.MAX_CONTROL_LINE_SIZE:
            return position
        self.buf.extend(data[position:])
        return len(data)


def _frame_end(data: bytes, position: int) -> int:
    """Where the complete frame at ``position`` ends, or -1 (cut by the chunk's end, or a shape
    only nats-py's parser knows what to do with)."""
    line_end = data.find(b"\r\n", position)
    if line_end < 0:
        return -1
    if not (data.startswith(b"MSG ", position) or data.startswith(b"HMSG ", position)):
        return line_end + 2
    size = data[position:line_end].rsplit(b" ", 1)[-1]
    if not size.isdigit():
        return -1
    frame_end = line_end + 2 + int(size) + 2
    return frame_end if frame_end <= len(data) else -1
