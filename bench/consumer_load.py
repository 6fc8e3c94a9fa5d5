"""The load of ``bench.consumers``: what the feed publishes on ``md.<SYMBOL>.trades``, with the
feed's headers on the feed's sample of messages.

``publish_raw`` writes the NATS protocol frames itself (``PUB`` / ``HPUB``, a chunk per write):
a load generator that costs ~0.1 µs of CPU a message leaves the two cores to the consumer and the
server (nats-py's ``publish`` costs ~1.5 µs a message, a core's worth at the rates measured here).
The consumer receives exactly what a nats-py publisher would make it receive.

- Payloads: valid ``TradeTick`` JSON with ``seq`` (1, 2, ...) and a ``feed_run``, as the feed
  publishes them (built with the pydantic contract, so every message passes the consumers' rules).
- ``Md-Publish-Ns`` (the publish -> consume lag sample) on the first message of every 10 ms of
  publishing time, as the feed's ``LAG_SAMPLE_NS`` does: at most ~100 a second.
- ``traceparent`` (a sampled W3C trace context) on a geometric 1 % of messages, at most 100 a
  second: the feed's defaults (``OTEL_TRACES_SAMPLER_ARG`` 0.01, ``MD_TRACE_MAX_PER_S`` 100). The
  consumer then records a CONSUMER span for each, exported to the OTLP sink.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from nats.aio.client import Client

from schemas import TradeTick
from services.common.messaging import PUBLISH_NS_HEADER, TRACEPARENT

LAG_SAMPLE_NS = 10_000_000
TRACE_RATIO = 0.01
TRACE_MAX_PER_S = 100
#: Publishes between two yields to the loop (nats-py flushes its buffer when the loop runs).
YIELD_EVERY = 256


def trades(symbol: str, n: int) -> list[bytes]:
    """``n`` valid trades of ``symbol``: a small random walk, one feed run, seq 1..n."""
    out = []
    cents = 5_000_000
    run = uuid.uuid4().hex
    now = time.time_ns()
    for i in range(1, n + 1):
        cents += (-1, 0, 1, 0)[i % 4] * (i % 7)
        tick = TradeTick(
            exchange="stub",
            symbol=symbol,
            trade_id=i,
            price=Decimal(cents) / 100,
            qty=Decimal("0.01"),
            side="buy" if i % 3 else "sell",
            is_buyer_maker=not i % 3,
            ts_event=now + i * 1000,
            ts_recv=now + i * 1000,
            seq=i,
            feed_run=run,
        )
        out.append(tick.to_json())
    return out


def _traceparent(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


def _gap(rng: random.Random, ratio: float) -> int:
    """Messages until the next traced one (geometric, mean 1/ratio), as ``Telemetry.gap``."""
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - ratio)) + 1


async def publish_all(
    nc: Client, subject: str, payloads: list[bytes], trace_ratio: float = TRACE_RATIO
) -> dict[str, int]:
    """Publish every payload with the feed's sampled headers; returns how many carried which."""
    rng = random.Random(7)
    countdown = _gap(rng, trace_ratio) if trace_ratio > 0 else -1
    next_lag = next_trace = 0
    lag_samples = traced = 0
    publish = nc.publish
    for i, payload in enumerate(payloads):
        countdown -= 1
        now = time.time_ns()
        headers: dict[str, str] | None = None
        if now >= next_lag:
            next_lag = now + LAG_SAMPLE_NS
            headers = {PUBLISH_NS_HEADER: str(now)}
            lag_samples += 1
        if countdown == 0:
            countdown = _gap(rng, trace_ratio)
            if now >= next_trace:
                next_trace = now + 1_000_000_000 // TRACE_MAX_PER_S
                headers = (headers or {}) | {TRACEPARENT: _traceparent(rng)}
                traced += 1
        if headers is None:
            await publish(subject, payload)
        else:
            await publish(subject, payload, headers=headers)
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    await nc.flush()
    return {"lag_samples": lag_samples, "traced": traced}


async def publish_raw(
    url: str, subject: str, payloads: list[bytes], rate: float = 0, chunk: int = 500
) -> dict[str, int]:
    """Publish every payload over a connection of our own, ``chunk`` messages per write, at most
    ``rate`` a second (0: as fast as the socket takes them), with the feed's sampled headers; waits
    until the server has them all (PING/PONG). Returns how many carried which header."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nPING\r\n')
    await writer.drain()
    await reader.readline()  # PONG
    rng = random.Random(7)
    countdown = _gap(rng, TRACE_RATIO)
    next_lag = next_trace = 0
    lag_samples = traced = 0
    pub = b"PUB " + subject.encode() + b" "
    hpub = b"HPUB " + subject.encode() + b" "
    start = time.perf_counter()
    for first in range(0, len(payloads), chunk):
        now = time.time_ns()
        frames = []
        for payload in payloads[first : first + chunk]:
            countdown -= 1
            headers = b""
            if now >= next_lag:
                next_lag = now + LAG_SAMPLE_NS
                headers += b"%s: %d\r\n" % (PUBLISH_NS_HEADER.encode(), now)
                lag_samples += 1
            if countdown == 0:
                countdown = _gap(rng, TRACE_RATIO)
                if now >= next_trace:
                    next_trace = now + 1_000_000_000 // TRACE_MAX_PER_S
                    headers += b"%s: %s\r\n" % (TRACEPARENT.encode(), _traceparent(rng).encode())
                    traced += 1
            if headers:
                block = b"NATS/1.0\r\n" + headers + b"\r\n"
                size = len(block) + len(payload)
                frames.append(b"%s%d %d\r\n%s%s\r\n" % (hpub, len(block), size, block, payload))
            else:
                frames.append(b"%s%d\r\n%s\r\n" % (pub, len(payload), payload))
        writer.write(b"".join(frames))
        await writer.drain()
        if rate > 0:
            ahead = (first + chunk) / rate - (time.perf_counter() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
    writer.write(b"PING\r\n")
    await writer.drain()
    while not (await reader.readline()).startswith(b"PONG"):
        pass
    writer.close()
    return {"lag_samples": lag_samples, "traced": traced}
