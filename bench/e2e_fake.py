"""The fake Binance spot venue of the end-to-end bench, in a process of its own (uvloop).

    python -m bench.e2e_fake --trades 102000 --diffs 8000     # then JSON commands on stdin

One loopback port serves REST and the combined stream (``bench/e2e_conn.py``). It is a
hand-written asyncio protocol rather than the websockets server, which frames and sends each
message in Python: sending 100k pre-encoded trade strings with ``await ws.send()`` ran at 37-46k
frames/s on this machine (2026-12-01, busy host), below the contenders it would feed. Here every
frame is pre-encoded (``bench/e2e_frames.py``) and a burst is written in batches, with flow
control (``pause_writing``) so the client's socket, not an unbounded buffer, sets the pace.

A connection starts in warm-up (one trade and one depth diff per 100 ms) until the parent says
``go`` with a plan: ``burst`` (N trades back to back, one depth diff every K trades) or ``timed``
(trades at the given gaps, depth diffs every ``depth_interval_s``). The send time of every
measured trade (``time.time_ns()`` just before the write) comes back with ``result``.

Commands (``bench/e2e_procs.py``): ``arm`` (close every connection; warm-up on or off for the next
ones), ``status``, ``go``, ``result``, ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop

from bench.e2e_conn import Conn
from bench.e2e_frames import (
    END_MARKER,
    FIRST_TRADE_ID,
    DepthPool,
    TradePool,
    depth_pool,
    exchange_info,
    trade_pool,
    ws_text_frame,
)
from bench.e2e_procs import serve_control

BURST_BATCH = 32  # frames joined into one write during a burst


@dataclass
class Plan:
    kind: str  # "burst" | "timed"
    trades: int
    depth_every: int = 20  # burst: one diff after every K trades (0: none)
    gaps_s: list[float] = field(default_factory=list)  # timed: delay before each trade
    depth_interval_s: float = 0.1  # timed: a diff this often (0: none)
    end_marker: bool = False


class Venue:
    def __init__(self, trades: TradePool, depth: DepthPool) -> None:
        self.trades = trades
        self.depth = depth
        self.exchange_info = exchange_info()
        self.conns: list[Conn] = []
        self.warm = True
        self.http_requests = 0
        self.snapshots = 0
        self.warm_trades = 0
        self.sent = 0
        self.task: asyncio.Task[dict[str, Any]] | None = None

    def newest(self) -> Conn | None:
        return self.conns[-1] if self.conns else None

    def start(self, conn: Conn, plan: Plan) -> None:
        if conn.warm_task is not None:
            conn.warm_task.cancel()
        self.task = asyncio.create_task(self._run(conn, plan))

    async def _run(self, conn: Conn, plan: Plan) -> dict[str, Any]:
        assert conn.transport is not None and conn.trades is not None
        first_id = FIRST_TRADE_ID + conn.trade_index
        depth_before = conn.depth_index
        send_ns: list[int] = []
        started = time.monotonic()
        if plan.kind == "burst":
            await self._burst(conn, plan, send_ns)
        else:
            await self._timed(conn, plan, send_ns)
        if plan.end_marker:
            conn.transport.write(ws_text_frame(END_MARKER))
        trades_sent = len(send_ns)
        return {
            "first_id": first_id,
            "send_ns": send_ns,
            "trades": trades_sent,
            "depth_frames": conn.depth_index - depth_before,
            "frames": trades_sent + conn.depth_index - depth_before,
            "elapsed_s": time.monotonic() - started,
            "closed_early": conn.closed.is_set(),
        }

    async def _burst(self, conn: Conn, plan: Plan, send_ns: list[int]) -> None:
        transport = conn.transport
        assert transport is not None
        batch: list[bytes] = []
        pending = 0
        for i in range(plan.trades):
            batch.append(conn.next_trade())
            pending += 1
            if plan.depth_every and conn.depth and (i + 1) % plan.depth_every == 0:
                batch.append(conn.next_depth())
            if len(batch) >= BURST_BATCH or i == plan.trades - 1:
                if not conn.writable.is_set():
                    await conn.writable.wait()
                if conn.closed.is_set():
                    return
                now = time.time_ns()
                send_ns.extend(itertools.repeat(now, pending))
                self.sent += pending
                transport.write(b"".join(batch))
                batch.clear()
                pending = 0

    async def _timed(self, conn: Conn, plan: Plan, send_ns: list[int]) -> None:
        transport = conn.transport
        assert transport is not None
        start = time.monotonic() + 0.02
        due = list(itertools.accumulate(plan.gaps_s))
        depth_every = plan.depth_interval_s if conn.depth else 0.0
        next_depth = depth_every / 2 if depth_every else float("inf")
        i = 0
        while i < len(due):
            is_trade = due[i] <= next_depth
            delay = start + (due[i] if is_trade else next_depth) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not conn.writable.is_set():
                await conn.writable.wait()
            if conn.closed.is_set():
                return
            if is_trade:
                frame = conn.next_trade()
                send_ns.append(time.time_ns())
                transport.write(frame)
                self.sent += 1
                i += 1
            else:
                transport.write(conn.next_depth())
                next_depth += depth_every

    # ---- control ------------------------------------------------------------------------------

    async def arm(self, request: dict[str, Any]) -> dict[str, Any]:
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None
        self.warm = bool(request.get("warm", True))
        self.http_requests = self.snapshots = self.warm_trades = self.sent = 0
        return {"ok": True}

    async def status(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "ws_connections": len(self.conns),
            "snapshots": self.snapshots,
            "http_requests": self.http_requests,
            "warm_trades": self.warm_trades,
            "sent": self.sent,
            "running": self.task is not None and not self.task.done(),
            "done": self.task is not None and self.task.done(),
        }

    async def go(self, request: dict[str, Any]) -> dict[str, Any]:
        conn = self.newest()
        if conn is None:
            raise RuntimeError("no WebSocket client connected")
        self.start(conn, Plan(**request["plan"]))
        return {"started": True, "first_id": FIRST_TRADE_ID + conn.trade_index}

    async def result(self, _: dict[str, Any]) -> dict[str, Any]:
        if self.task is None:
            raise RuntimeError("nothing started")
        return await self.task


async def main_async(args: argparse.Namespace) -> None:
    started = time.monotonic()
    t0_ms = time.time_ns() // 1_000_000
    venue = Venue(trade_pool(args.trades, args.seed, t0_ms), depth_pool(args.diffs, args.seed + 1, t0_ms))
    build_s = time.monotonic() - started
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(venue), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"fake venue on 127.0.0.1:{port}, frames built in {build_s:.1f}s", file=sys.stderr)
    handlers = {"arm": venue.arm, "status": venue.status, "go": venue.go, "result": venue.result}
    await serve_control(handlers, {"port": port, "build_s": build_s})
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=102_000, help="trade frames in the pool")
    parser.add_argument("--diffs", type=int, default=8_000, help="depth diffs in the pool")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    uvloop.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
