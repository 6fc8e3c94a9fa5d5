"""Websocket connections to Binance: how streams are spread, opened, read and closed.

Streams are split across connections within Binance's per-connection limit (spot 1024, USD-M
planned at 200), per routed path (USD-M: ``/public`` for depth, ``/market`` for trades - the
unrouted URL silently delivers no trades). A ``Link`` is one connection.

The client is picows (chosen by measurement, ``docs/benchmarks.md``: ~0.8 µs of CPU a frame where
the websockets library takes ~5 µs). Frames are handed to the handler as they are parsed, in the
socket's own callback: no queue and no task switch between the socket and the decoder. The
handler says when the feed is full; the link then stops reading the socket (``pause``) until the
feed has room, so the kernel and the venue hold a burst, not our memory. Closing is fast: a close
frame, a short wait, then the socket is aborted - a venue that does not answer never delays a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from picows import WSAutoPingStrategy, WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from services.common.logging import get_logger

log = get_logger("binance")

#: Links with depth have a 100 ms heartbeat of their own (silence is detected from it); we still
#: ping when idle. Links without depth (USD-M /market) are pinged after 1.5 s of silence, and closed
#: when no pong comes within 1.5 s: a half-open one is found in ~3 s.
PING_IDLE_S = 20.0
QUIET_PING_IDLE_S = 1.5
QUIET_PING_REPLY_S = 1.5
#: The largest message accepted (bigger closes the connection): far above any real frame, so an
#: oversized one is dropped by the decoder (counted) and the socket stays up.
MAX_WS_FRAME = 64 << 20
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 0.5

#: (payload, receipt time ns, link, binary) -> True to keep reading, False to pause until there is room.
FrameHandler = Callable[["bytes | memoryview", int, "Link", bool], bool]


@dataclass(eq=False)
class Link:
    path: str
    streams: list[str]
    transport: WSTransport | None = None
    opened_at: float = field(default_factory=time.monotonic)
    last_frame_at: float = field(default_factory=time.monotonic)
    frames: int = 0
    retiring: bool = False  # being replaced: no second replacement may start
    replaced: asyncio.Event = field(default_factory=asyncio.Event)  # its replacement ended (either way)
    close_code: int | None = None
    handler: FrameHandler | None = None
    resume: Callable[[Link], None] | None = None  # called when the link paused: wait for room, resume
    _partial: bytearray | None = None  # a fragmented message being reassembled
    _binary: bool = False  # the message being received is a binary one
    paused: bool = False  # reading stopped until the feed has room

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_disconnected

    @property
    def carries_depth(self) -> bool:
        return any("@depth" in s for s in self.streams)

    def on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            if kind is not WSMsgType.CONTINUATION:
                self._binary = kind is WSMsgType.BINARY
            if not frame.fin or self._partial is not None:  # Binance does not fragment; be correct anyway
                self._partial = (self._partial or bytearray()) + frame.get_payload_as_bytes()
                if not frame.fin:
                    return
                payload: bytes | memoryview = bytes(self._partial)
                self._partial = None
            else:
                payload = frame.get_payload_as_memoryview()  # valid during this call only
            self.last_frame_at = time.monotonic()
            self.frames += 1
            assert self.handler is not None
            if not self.handler(payload, time.time_ns(), self, self._binary) and not self.paused:
                self.paused = True  # once: the frames already read are handled; no more are read
                transport.underlying_transport.pause_reading()
                if self.resume is not None:
                    self.resume(self)
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def resume_reading(self) -> None:
        self.paused = False
        if self.is_open:
            assert self.transport is not None
            self.transport.underlying_transport.resume_reading()

    async def wait_closed(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):  # how it ended is not ours to raise here
                await self.transport.wait_disconnected()

    async def close(self) -> None:
        """Close quickly: a close frame, a short wait, then abort (never waits on a silent venue)."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        with contextlib.suppress(Exception):
            transport.send_close(WSCloseCode.OK)
            transport.disconnect(graceful=True)
        try:
            await asyncio.wait_for(self.wait_closed(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            transport.disconnect(graceful=False)

    def send_subscribe(self, streams: list[str], request_id: int) -> None:
        """Binance's live SUBSCRIBE on this connection (harmless for a stream already on it)."""
        if self.transport is not None and not self.transport.is_disconnected:
            message = orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": request_id})
            self.transport.send(WSMsgType.TEXT, message)


class _Listener(WSListener):
    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.link.on_frame(transport, frame)


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


async def connect(ws_url: str, link: Link, ping_timeout_s: float) -> Link:
    """Connect ``link`` (made beforehand, so its first frame already finds its handler)."""
    quiet = not link.carries_depth
    transport, _ = await asyncio.wait_for(
        ws_connect(
            lambda: _Listener(link),
            f"{ws_url}{link.path}?streams={'/'.join(link.streams)}",
            websocket_handshake_timeout=OPEN_TIMEOUT_S,
            enable_auto_ping=True,
            auto_ping_idle_timeout=QUIET_PING_IDLE_S if quiet else PING_IDLE_S,
            auto_ping_reply_timeout=QUIET_PING_REPLY_S if quiet else min(ping_timeout_s, PING_IDLE_S),
            auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
            max_frame_size=MAX_WS_FRAME,
            disconnect_on_exception=False,
        ),
        OPEN_TIMEOUT_S + 5,
    )
    link.transport = transport
    link.opened_at = link.last_frame_at = time.monotonic()
    return link
