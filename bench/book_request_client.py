"""The book-request bench's requester, in a process of its own (its reply handling must not delay
the venue's sends or the subscriber's receipts).

    python -m bench.book_request_client --url nats://127.0.0.1:4222 --symbol BTCUSDT

Command ``ask`` (``body``, ``seconds``, ``rate``): ``md.<SYMBOL>.book`` requests for that long, back to
back (``rate`` 0) or at most ``rate`` a second;
answers every round trip (ms), error reply or timeout, and the size and levels of the first reply.
Commands (``bench/e2e_procs.py``): ``ask``, ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import nats
import orjson
import uvloop
from nats.errors import TimeoutError as NatsTimeout

from bench.e2e_procs import serve_control
from schemas import subjects


async def main_async(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.url, connect_timeout=5)
    subject = subjects.book(args.symbol)

    async def ask(request: dict[str, Any]) -> dict[str, Any]:
        body, rate = request["body"].encode(), request.get("rate", 0)
        start = time.monotonic()
        deadline = start + request["seconds"]
        rtts: list[float] = []
        errors: dict[str, int] = {}
        first: dict[str, Any] = {}
        sent = 0
        while time.monotonic() < deadline:
            if rate > 0:
                await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
            sent += 1
            started = time.perf_counter()
            try:
                reply = await nc.request(subject, body, timeout=10)
            except NatsTimeout:
                errors["timeout"] = errors.get("timeout", 0) + 1
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            error = (reply.headers or {}).get("Nats-Service-Error")
            if error is not None:
                errors[error] = errors.get(error, 0) + 1
                continue
            rtts.append(elapsed_ms)
            if not first:
                answer = orjson.loads(reply.data)
                first = {"bytes": len(reply.data), "bids": len(answer["bids"]), "asks": len(answer["asks"])}
        return {"rtt_ms": rtts, "errors": errors, "first": first}

    await serve_control({"ask": ask}, {"ready": True})
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
