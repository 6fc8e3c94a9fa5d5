"""The end-to-end bench's subscriber, in a process of its own: receipt time per trade id.

    python -m bench.e2e_sub --url nats://127.0.0.1:4222 --subject md.BTCUSDT.trades \\
        --depth-subject md.BTCUSDT.depth

The callback only stores ``(time.time_ns(), payload)``; payloads are decoded (``trade_id``, which
every contender publishes) when the parent asks for them, so decoding never delays a receipt.
Depth messages are only counted (proof that each contender published its book alongside).
Commands (``bench/e2e_procs.py``): ``reset``, ``count`` (with the last message's trade id),
``dump`` (ids and receipt times), ``health`` (a service's health reply), ``quit``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import nats
import orjson
import uvloop
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from bench.e2e_procs import serve_control
from schemas import subjects


async def main_async(args: argparse.Namespace) -> None:
    received: list[tuple[int, bytes]] = []
    errors: list[str] = []

    async def on_msg(msg: Msg) -> None:
        received.append((time.time_ns(), msg.data))

    depth = [0]

    async def on_depth(_: Msg) -> None:
        depth[0] += 1

    async def on_error(error: Exception) -> None:
        errors.append(repr(error))  # a slow consumer is reported only here

    nc = await nats.connect(args.url, error_cb=on_error, connect_timeout=5, max_reconnect_attempts=0)
    await nc.subscribe(args.subject, cb=on_msg, pending_msgs_limit=2_000_000, pending_bytes_limit=1 << 30)
    await nc.subscribe(args.depth_subject, cb=on_depth)
    await nc.flush()

    async def reset(_: dict[str, Any]) -> dict[str, Any]:
        received.clear()
        errors.clear()
        depth[0] = 0
        return {"ok": True}

    async def count(_: dict[str, Any]) -> dict[str, Any]:
        last = int(orjson.loads(received[-1][1])["trade_id"]) if received else None
        return {"n": len(received), "last_id": last}

    async def dump(_: dict[str, Any]) -> dict[str, Any]:
        ids, recv_ns, bad = [], [], 0
        for ns, data in received:
            try:
                ids.append(int(orjson.loads(data)["trade_id"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
                continue
            recv_ns.append(ns)
        return {
            "ids": ids,
            "recv_ns": recv_ns,
            "undecodable": bad,
            "depth_msgs": depth[0],
            "errors": errors[:10],
        }

    async def health(request: dict[str, Any]) -> dict[str, Any]:
        """A service's health reply over NATS (``hftfeed health``'s request), or why there is none."""
        try:
            reply = await nc.request(subjects.health(request["service"]), b"", timeout=2)
            body: dict[str, Any] = orjson.loads(reply.data)
            return {"health": body}
        except (TimeoutError, NatsError, orjson.JSONDecodeError) as error:
            return {"health": None, "why": repr(error)}

    handlers = {"reset": reset, "count": count, "dump": dump, "health": health}
    await serve_control(handlers, {"ready": True})
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--subject", required=True, help="trades")
    parser.add_argument("--depth-subject", required=True, help="counted only")
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
