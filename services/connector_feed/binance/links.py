"""Websocket connections to Binance: how streams are spread, opened, read and closed.

Streams are split across connections within Binance's per-connection limit (spot 1024, USD-M
planned at 200), per routed path (USD-M: ``/public`` for depth, ``/market`` for trades - the
unrouted URL silently delivers no trades). A ``Link`` is one connection and its reader task; the
supervisor (``supervisor``) decides when links are replaced. Closing is fast: a short close
handshake, then the socket is aborted - a venue that does not answer never delays a stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.common.logging import get_logger

log = get_logger("binance")

PING_INTERVAL_S = 20.0  # our pings on links with depth (Binance pings us too: websockets answers)
#: Links that carry no depth (USD-M /market) have no 100 ms heartbeat: ping them every second.
QUIET_PING_INTERVAL_S = 1.0
QUIET_PING_TIMEOUT_S = 2.0
#: The largest frame the websocket accepts (bigger closes the connection, 1009): far above any
#: real frame, so an oversized one is dropped by the decoder (counted) and the socket stays up.
MAX_WS_FRAME = 64 << 20
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 0.5

#: (frame, receipt time ns, link) -> awaited for each frame, in order.
FrameHandler = Callable[[str | bytes, int, "Link"], Awaitable[None]]


@dataclass(eq=False)
class Link:
    path: str
    streams: list[str]
    ws: ClientConnection
    opened_at: float = field(default_factory=time.monotonic)
    last_frame_at: float = field(default_factory=time.monotonic)
    frames: int = 0
    reader: asyncio.Task[None] | None = None
    retiring: bool = False  # being replaced: no second replacement may start

    @property
    def is_open(self) -> bool:
        return self.ws.state.name == "OPEN"

    @property
    def carries_depth(self) -> bool:
        return any("@depth" in s for s in self.streams)

    async def read(self, handle: FrameHandler) -> None:
        """Hand every frame to ``handle`` until the connection ends (returns normally then)."""
        ws = self.ws
        try:
            async for frame in ws:
                self.last_frame_at = time.monotonic()
                self.frames += 1
                await handle(frame, time.time_ns(), self)
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        """Close quickly: a short close handshake, then abort (never waits on a silent venue)."""
        try:
            await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT_S)
        except (TimeoutError, OSError, ConnectionClosed):
            pass
        finally:
            transport = self.ws.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    async def resubscribe(self, streams: list[str], request_id: int) -> None:
        """Binance's live SUBSCRIBE on this connection (harmless for a stream already on it)."""
        import orjson

        await self.ws.send(
            orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": request_id}).decode()
        )


def routes(
    venue_symbols: list[str], market: str, trade_streams: list[str], depth_stream: str
) -> dict[str, list[str]]:
    """Combined streams per connection path: spot ``/stream``; USD-M futures' routed paths."""
    trades = [f"{s.lower()}@{kind}" for kind in trade_streams for s in venue_symbols]
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
    quiet = not any("@depth" in s for s in streams)
    ws = await asyncio.wait_for(
        connect(
            url,
            max_size=MAX_WS_FRAME,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            ping_interval=QUIET_PING_INTERVAL_S if quiet else PING_INTERVAL_S,
            ping_timeout=QUIET_PING_TIMEOUT_S if quiet else ping_timeout_s,
        ),
        OPEN_TIMEOUT_S + 5,
    )
    return Link(path, streams, ws)
