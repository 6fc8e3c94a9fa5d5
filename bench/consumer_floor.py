"""The floor of ``bench.consumers``: the least a Python consumer of ``md.*.trades`` can do.

A bare nats-py ``cb=`` subscription (uvloop) whose callback decodes each message with
``schemas.wire.decode_trade`` (the consumers' own decoder and rules) and counts it: nats-py's
delivery plus decoding, nothing else. It answers ``bench.floor.count`` with the count.

    python -m bench.consumer_floor NATS_URL
"""

from __future__ import annotations

import asyncio
import sys

import nats
import uvloop
from nats.aio.msg import Msg

from schemas import subjects
from schemas.wire import decode_trade

COUNT_SUBJECT = "bench.floor.count"


async def serve(url: str) -> None:
    nc = await nats.connect(url)
    consumed = 0

    async def on_trade(msg: Msg) -> None:
        nonlocal consumed
        decode_trade(msg.data)
        consumed += 1

    async def on_count(msg: Msg) -> None:
        await msg.respond(str(consumed).encode())

    await nc.subscribe(subjects.ALL_TRADES, cb=on_trade, pending_msgs_limit=524_288)
    await nc.subscribe(COUNT_SUBJECT, cb=on_count)
    await nc.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1]))
