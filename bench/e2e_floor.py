"""The floor of the end-to-end bench: a minimal websockets -> orjson -> nats-py republisher.

    python -m bench.e2e_floor --ws-url ws://127.0.0.1:PORT --nats-url nats://... \\
        --trades-subject md.BTCUSDT.trades --depth-subject md.BTCUSDT.depth

What twenty lines of hand-written Python do with no book, no validation, no queue and no
telemetry: per frame, decode, build a small dict, encode, publish. Standalone (websockets, orjson,
nats-py, uvloop), so any interpreter holding those can run it.
"""

from __future__ import annotations

import argparse
import time

import nats
import orjson
import uvloop
from websockets.asyncio.client import connect


async def republish(ws_url: str, nats_url: str, trades_subject: str, depth_subject: str) -> None:
    nc = await nats.connect(nats_url)
    async with connect(f"{ws_url}/stream?streams=btcusdt@trade/btcusdt@depth@100ms", max_size=2**24) as ws:
        async for frame in ws:
            data = orjson.loads(frame)["data"]
            if data["e"] == "trade":
                trade = {"symbol": data["s"], "trade_id": data["t"], "price": data["p"], "qty": data["q"]}
                trade |= {"is_buyer_maker": data["m"], "ts_event": data["T"] * 1_000_000}
                trade["ts_recv"] = time.time_ns()
                await nc.publish(trades_subject, orjson.dumps(trade))
            elif data["e"] == "depthUpdate":
                depth = {"symbol": data["s"], "first_update_id": data["U"], "last_update_id": data["u"]}
                depth |= {"bids": data["b"], "asks": data["a"], "ts_recv": time.time_ns()}
                await nc.publish(depth_subject, orjson.dumps(depth))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ws-url", required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--trades-subject", required=True)
    parser.add_argument("--depth-subject", required=True)
    args = parser.parse_args()
    uvloop.run(republish(args.ws_url, args.nats_url, args.trades_subject, args.depth_subject))


if __name__ == "__main__":
    main()
