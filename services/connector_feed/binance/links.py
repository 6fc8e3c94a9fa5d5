"""Websocket connections to Binance: how streams are spread, opened, and replaced.

Streams are split across connections within Binance's per-connection limit (spot 1024, USD-M
planned at 200), per routed path. A connection is replaced make-before-break - open the new one,
then close the old - before Binance's 24-hour cut and on ``serverShutdown``; while both are open
the same frames arrive twice and are dropped as duplicates downstream (trade ids, update ids), so
no book is resynced unless a real gap appears.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

PING_INTERVAL_S = 20.0  # our pings; Binance answers (and pings us: websockets answers those)
#: The largest frame the websocket accepts (bigger closes the connection, 1009): far above any
#: real frame, so an oversized one is dropped by the connector (counted) and the socket stays up.
MAX_WS_FRAME = 64 << 20


@dataclass
class Link:
    path: str
    streams: list[str]
    ws: ClientConnection
    opened_at: float = field(default_factory=time.monotonic)
    reader: asyncio.Task[None] | None = None
    retiring: bool = False  # being replaced: a second serverShutdown must not start another rotation

    @property
    def is_open(self) -> bool:
        return self.ws.state.name == "OPEN"


def routes(
    venue_symbols: list[str], market: str, trade_stream: str, depth_stream: str
) -> dict[str, list[str]]:
    """Combined streams per connection path: spot ``/stream``; USD-M futures' routed paths, ``/public``
    for depth and ``/market`` for trades (the unrouted URL silently delivers no trades)."""
    trades = [f"{s.lower()}@{trade_stream}" for s in venue_symbols]
    if depth_stream == "diff":
        depth = [f"{s.lower()}@depth@100ms" for s in venue_symbols]
    else:
        depth = [f"{s.lower()}@depth{depth_stream.removeprefix('partial')}@100ms" for s in venue_symbols]
    if market == "spot":
        return {"/stream": trades + depth}
    return {"/market/stream": trades, "/public/stream": depth}


def plan(routes: dict[str, list[str]], max_streams: int) -> list[tuple[str, list[str]]]:
    """(path, streams) per connection: every route's streams in chunks of at most ``max_streams``."""
    return [
        (path, streams[i : i + max_streams])
        for path, streams in routes.items()
        for i in range(0, len(streams), max_streams)
    ]


async def open_link(ws_url: str, path: str, streams: list[str], ping_timeout_s: float) -> Link:
    url = f"{ws_url}{path}?streams={'/'.join(streams)}"
    ws = await asyncio.wait_for(
        connect(
            url,
            max_size=MAX_WS_FRAME,
            open_timeout=10,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=ping_timeout_s,
        ),
        15,
    )
    return Link(path, streams, ws)
