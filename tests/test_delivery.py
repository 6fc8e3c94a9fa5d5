"""Batched delivery (``services.common.delivery``): what nats-py would deliver, in the same order,
with the same bound - only cheaper.

The parser test drives the client's protocol parser directly (the one nats-py internal this
module replaces): it is the only way to cut a stream at arbitrary places.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import nats
from hypothesis import given
from hypothesis import strategies as st
from nats.protocol.parser import Parser

from services.common import delivery
from services.common.bus import Bus, settled
from services.common.delivery import Batch, BatchingClient, BatchingParser
from tests.helpers import eventually

Event = tuple[Any, ...]
Delivered = list[tuple[str, bytes, dict[str, str] | None]]


def _collector(into: Delivered) -> delivery.Handler:
    def handler(subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
        into.append((subject, data, headers))
        return False

    return handler


def test_the_installed_nats_py_is_supported() -> None:
    assert delivery.supported()  # else every consumer silently falls back to nats-py's slow path


class _Recorded(Batch):
    def __init__(self, sid: int, log: list[Event]) -> None:
        super().__init__(lambda *_: False, lambda _: None, lambda _: None, 10**9, 0)
        self.sid, self.log = sid, log

    def put(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        self.log.append(("batched", self.sid, subject, data, headers))


class _RecordingClient(BatchingClient):
    """Records what the parser hands on; never talks to a server."""

    def __init__(self, parser: type[Parser]) -> None:
        super().__init__()
        self.log: list[Event] = []
        for sid in (1, 2):
            self.batches[sid] = _Recorded(sid, self.log)
        self._ps = parser(self)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if sid in self.batches:
            await super()._process_msg(sid, subject, reply, data, headers)
        else:
            self.log.append(("other", sid, subject.decode(), reply, data, headers))

    async def _process_ping(self) -> None:
        self.log.append(("ping",))

    async def _process_pong(self) -> None:
        self.log.append(("pong",))

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        self.log.append(("info", info))

    async def _process_err(self, err_msg: str) -> None:
        self.log.append(("err", err_msg))


_payloads = st.binary(max_size=300) | st.sampled_from([b"MSG x 1 3\r\nabc\r\n", b"\r\n", b"PING\r\n", b""])
_header_values = st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=20)


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["msg", "msg", "hmsg", "ping", "pong", "ok", "info", "err"]))
    if kind in ("ping", "pong", "ok"):
        return {"ping": b"PING\r\n", "pong": b"PONG\r\n", "ok": b"+OK\r\n"}[kind]
    if kind == "info":
        return b'INFO {"server_id":"S%d"}\r\n' % draw(st.integers(0, 9))
    if kind == "err":
        return b"-ERR 'Permissions Violation for Subscription to md.X'\r\n"
    sid = draw(st.sampled_from([1, 2, 9]))  # 9: a subscription that is not batched
    subject = draw(st.sampled_from([b"md.BTCUSDT.trades", b"md.ETH-PERP.depth", b"_INBOX.x"]))
    reply = draw(st.sampled_from([b"", b"_INBOX.abc.1 "]))
    payload = draw(_payloads)
    if kind == "msg":
        return b"MSG %s %d %s%d\r\n%s\r\n" % (subject, sid, reply, len(payload), payload)
    headers = draw(st.dictionaries(st.sampled_from(["Md-Publish-Ns", "traceparent"]), _header_values))
    block = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
    block += b"\r\n"
    size = len(block) + len(payload)
    return b"HMSG %s %d %s%d %d\r\n%s%s\r\n" % (subject, sid, reply, len(block), size, block, payload)


async def _parse(parser: type[Parser], chunks: list[bytes]) -> list[Event]:
    client = _RecordingClient(parser)
    for chunk in chunks:
        await client._ps.parse(chunk)
    return client.log


@given(frames=st.lists(_frame(), max_size=40), cuts=st.lists(st.integers(0, 20_000), max_size=12))
def test_the_batching_parser_hands_on_exactly_what_nats_py_s_parser_does(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frames)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]

    expected = asyncio.run(_parse(Parser, [stream]))
    got = asyncio.run(_parse(BatchingParser, chunks))

    assert got == expected
    assert len(got) == len(frames) - frames.count(b"+OK\r\n")  # +OK is swallowed by both


async def test_batched_subscriptions_get_every_message_in_order_with_headers(
    nats_url: str, unique: str
) -> None:
    bus = await Bus.connect(nats_url, "test-delivery")
    publisher = await nats.connect(nats_url)
    got: Delivered = []
    others: list[bytes] = []

    async def on_other(msg: Any) -> None:
        others.append(msg.data)

    async def on_request(msg: Any) -> None:
        await msg.respond(b"pong")

    try:
        await bus.subscribe_batched(f"md.{unique}.*", _collector(got))
        await bus.subscribe(f"other.{unique}", on_other)
        await publisher.subscribe(f"svc.{unique}", cb=on_request)
        await settled(bus.nc)
        sent = []
        for i in range(3000):
            size = i * 7919 % 60_000 if i % 50 == 0 else i % 300  # some frames span the client's reads
            data = b"%d:" % i + b"x" * size
            headers = {"Md-Publish-Ns": str(i)} if i % 7 == 0 else None
            sent.append((f"md.{unique}.{'trades' if i % 2 else 'depth'}", data, headers))
            await publisher.publish(sent[-1][0], data, headers=headers)
            if i % 500 == 0:
                await publisher.publish(f"other.{unique}", b"%d" % i)
                assert (await bus.request(f"svc.{unique}", b"", timeout_s=5)).data == b"pong"
        await settled(publisher)
        await eventually(lambda: len(got) == len(sent), timeout_s=20)
    finally:
        await publisher.drain()
        await bus.drain()

    assert got == sent
    assert others == [b"%d" % i for i in range(0, 3000, 500)]


async def test_a_full_batch_drops_counts_and_reports_a_slow_consumer(nats_url: str, unique: str) -> None:
    bus = await Bus.connect(nats_url, "test-delivery-slow")
    losses: list[str] = []
    bus.on_loss(losses.append)
    handled: list[bytes] = []

    def slow(subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
        time.sleep(0.002)  # a handler far slower than the burst
        handled.append(data)
        return False

    publisher = await nats.connect(nats_url)
    try:
        await bus.subscribe_batched(f"md.{unique}.trades", slow, pending_msgs_limit=20)
        await settled(bus.nc)
        for i in range(500):
            await publisher.publish(f"md.{unique}.trades", b"%d" % i)
        await settled(publisher)
        await eventually(lambda: len(handled) + bus.stats.slow_consumer_drops == 500, timeout_s=20)
    finally:
        await publisher.drain()
        await bus.drain()

    assert bus.stats.slow_consumer_drops > 0
    assert "slow_consumer" in losses
    assert handled == sorted(handled, key=int)  # what was kept, in order


async def test_drain_hands_on_everything_sent_before_it(nats_url: str, unique: str) -> None:
    bus = await Bus.connect(nats_url, "test-delivery-drain")
    got: Delivered = []
    await bus.subscribe_batched(f"md.{unique}.trades", _collector(got))
    await settled(bus.nc)
    publisher = await nats.connect(nats_url)
    for i in range(20_000):
        await publisher.publish(f"md.{unique}.trades", b"%d" % i)
    await settled(publisher)
    await publisher.drain()

    await bus.drain()

    assert len(got) == 20_000 and got[-1][1] == b"19999"


async def test_a_plain_nats_py_client_falls_back_to_the_same_delivery(nats_url: str, unique: str) -> None:
    bus = Bus(await nats.connect(nats_url), "test-delivery-plain")  # not a BatchingClient
    got: Delivered = []
    await bus.subscribe_batched(f"md.{unique}.*", _collector(got))
    await settled(bus.nc)
    publisher = await nats.connect(nats_url)
    await publisher.publish(f"md.{unique}.trades", b"1")
    await publisher.publish(f"md.{unique}.depth", b"2", headers={"traceparent": "t"})
    await settled(publisher)
    try:
        await eventually(lambda: len(got) == 2)
    finally:
        await publisher.drain()
        await bus.drain()

    assert got == [(f"md.{unique}.trades", b"1", None), (f"md.{unique}.depth", b"2", {"traceparent": "t"})]
