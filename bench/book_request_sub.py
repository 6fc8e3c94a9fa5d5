"""The book-request bench's subscriber, in a process of its own: receipt time of every message.

    python -m bench.book_request_sub --url nats://127.0.0.1:4222 --symbol BTCUSDT

Records ``(time.time_ns(), payload)`` for ``md.<SYMBOL>.trades`` and ``.depth``; payloads are
decoded only when the parent asks (``dump``: per message its kind, venue id - ``trade_id`` or the
diff's ``last_update_id`` - ``seq`` and receipt time), so decoding never delays a receipt.
Commands (``bench/e2e_procs.py``): ``reset``, ``count``, ``dump``, ``quit``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import nats
import orjson
import uvloop
from nats.aio.msg import Msg

from bench.e2e_procs import serve_control
from schemas import subjects


async def main_async(args: argparse.Namespace) -> None:
    received: list[tuple[int, str, bytes]] = []
    errors: list[str] = []

    def recorder(kind: str) -> Any:
        async def on_msg(msg: Msg) -> None:
            received.append((time.time_ns(), kind, msg.data))

        return on_msg

    async def on_error(error: Exception) -> None:
        errors.append(repr(error))  # a slow consumer is reported only here

    nc = await nats.connect(args.url, error_cb=on_error, connect_timeout=5)
    for kind, subject in (("trade", subjects.trades(args.symbol)), ("depth", subjects.depth(args.symbol))):
        await nc.subscribe(
            subject, cb=recorder(kind), pending_msgs_limit=2_000_000, pending_bytes_limit=1 << 30
        )
    await nc.flush()

    async def reset(_: dict[str, Any]) -> dict[str, Any]:
        received.clear()
        errors.clear()
        return {"ok": True}

    async def count(_: dict[str, Any]) -> dict[str, Any]:
        return {"n": len(received)}

    async def dump(_: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for ns, kind, data in received:
            body = orjson.loads(data)
            venue_id = body["trade_id"] if kind == "trade" else body["last_update_id"]
            rows.append([ns, kind, venue_id, body.get("seq"), body.get("is_snapshot", False)])
        return {"rows": rows, "errors": errors[:10]}

    await serve_control({"reset": reset, "count": count, "dump": dump}, {"ready": True})
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--symbol", required=True)
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
