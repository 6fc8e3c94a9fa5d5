"""The fake venue's connections (``bench/e2e_fake.py``): HTTP requests, then a WebSocket stream.

One hand-written asyncio protocol serves both on one port. REST: ``/api/v3/exchangeInfo`` and
``/api/v3/depth`` (the snapshot for the newest stream's depth cursor), keep-alive. WebSocket:
combined streams only (``/stream?streams=...``, or ``/stream`` then live ``SUBSCRIBE``); which
trades a connection gets (``@trade`` or ``@aggTrade`` form, same ids) and whether it gets depth
follow the streams it asked for. Client pings get pongs and a close gets a close; compression is
never negotiated. Frames come pre-encoded from ``bench/e2e_frames.py``; the write buffer's
high-water mark turns a slow reader into ``pause_writing`` for the senders to wait on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from bench.e2e_frames import AGG_TRADE_STREAM, DEPTH_STREAM, TRADE_STREAM, ws_frame, ws_text_frame

if TYPE_CHECKING:
    from bench.e2e_fake import Venue

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WARM_INTERVAL_S = 0.1
WRITE_HIGH_WATER = 256 * 1024


class Conn(asyncio.Protocol):
    """One client connection: HTTP requests, then (after an upgrade) a WebSocket stream."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.is_ws = False
        self.trades: list[bytes] | None = None
        self.depth = False
        self.streams: list[str] = []
        self.trade_index = 0
        self.depth_index = 0
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = asyncio.Event()
        self.warm_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.writable.set()
        if self.warm_task is not None:
            self.warm_task.cancel()
        if self in self.venue.conns:
            self.venue.conns.remove(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.is_ws:
            self._client_frames()
        else:
            self._http()

    # ---- HTTP -------------------------------------------------------------------------------

    def _http(self) -> None:
        while not self.is_ws and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            request_line, *lines = head.split("\r\n")
            target = request_line.split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if headers.get("upgrade", "").lower() == "websocket":
                self._upgrade(url.path, query, headers)
            else:
                self._route(url.path, query)
        if self.is_ws and self.buffer:
            self._client_frames()

    def _route(self, path: str, query: dict[str, str]) -> None:
        venue = self.venue
        venue.http_requests += 1
        if path == "/api/v3/exchangeInfo":
            self._respond(200, venue.exchange_info)
        elif path == "/api/v3/depth":
            venue.snapshots += 1
            newest = venue.newest()
            cursor = newest.depth_index if newest is not None else 0
            self._respond(200, venue.depth.snapshot(cursor, int(query.get("limit", "1000"))))
        elif path in ("/api/v3/ping", "/api/v3/time"):
            self._respond(200, b"{}")
        else:
            self._respond(404, b'{"code":-1121,"msg":"unknown path"}')

    def _respond(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        reason = {200: "OK", 404: "Not Found"}[status]
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-MBX-USED-WEIGHT-1M: 1\r\n\r\n".encode()
            + body
        )

    def _upgrade(self, path: str, query: dict[str, str], headers: dict[str, str]) -> None:
        assert self.transport is not None
        if path != "/stream":
            self._respond(404, b'{"code":-1,"msg":"only combined streams (/stream) here"}')
            return
        self._subscribe(query.get("streams", "").split("/"))
        digest = hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
        )
        self.is_ws = True
        self.venue.conns.append(self)
        if self.venue.warm:
            self.warm_task = asyncio.create_task(self._warm())

    def _subscribe(self, streams: list[str]) -> None:
        self.streams = [*self.streams, *streams]
        pool = self.venue.trades
        agg, raw = AGG_TRADE_STREAM in self.streams, TRADE_STREAM in self.streams
        self.trades = pool.agg if agg else pool.trade if raw else None
        self.depth = DEPTH_STREAM in self.streams

    # ---- WebSocket ---------------------------------------------------------------------------

    def _client_frames(self) -> None:
        """Masked client frames: answer pings, closes and SUBSCRIBE requests; ignore the rest."""
        assert self.transport is not None
        buf = self.buffer
        while len(buf) >= 2:
            opcode, size, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size >= 126:
                width = 2 if size == 126 else 8
                if len(buf) < 2 + width:
                    return
                size, pos = int.from_bytes(buf[2 : 2 + width], "big"), 2 + width
            masked = buf[1] & 0x80
            end = pos + (4 if masked else 0) + size
            if len(buf) < end:
                return
            body = buf[end - size : end]
            if masked:
                key = buf[pos : pos + 4]
                body = bytearray(b ^ key[i % 4] for i, b in enumerate(body))
            del buf[:end]
            if opcode == 0x9:
                self.transport.write(ws_frame(0xA, bytes(body)))
            elif opcode == 0x1:
                self._request(bytes(body))
            elif opcode == 0x8:
                self.transport.write(ws_frame(0x8, bytes(body[:2])))
                self.transport.close()
                return

    def _request(self, body: bytes) -> None:
        """A live ``SUBSCRIBE`` (same streams, same frames as in the URL); anything else: null."""
        assert self.transport is not None
        try:
            request = orjson.loads(body)
            if request.get("method") == "SUBSCRIBE":
                self._subscribe([str(s) for s in request.get("params", [])])
            reply = {"result": None, "id": request.get("id")}
        except (orjson.JSONDecodeError, AttributeError):
            reply = {"error": {"code": 2, "msg": "Invalid request"}, "id": None}
        self.transport.write(ws_text_frame(orjson.dumps(reply)))

    def next_trade(self) -> bytes:
        assert self.trades is not None
        frame = self.trades[self.trade_index]  # IndexError: the pool is too small for this run
        self.trade_index += 1
        return frame

    def next_depth(self) -> bytes:
        frame = self.venue.depth.frames[self.depth_index]
        self.depth_index += 1
        return frame

    async def _warm(self) -> None:
        assert self.transport is not None
        while not self.closed.is_set():
            if self.depth:
                self.transport.write(self.next_depth())
            await asyncio.sleep(WARM_INTERVAL_S / 2)
            if self.trades is not None:
                self.transport.write(self.next_trade())
                self.venue.warm_trades += 1
            await asyncio.sleep(WARM_INTERVAL_S / 2)
