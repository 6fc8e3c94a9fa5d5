"""One WebSocket client reading the bench's fake Binance until its end marker (``bench/ws_clients.py``).

    python bench/ws_client_runner.py CLIENT ws://127.0.0.1:PORT/stream?streams=... OUT.json

CLIENT: ``raw`` (a hand-written asyncio protocol: handshake, then frame headers parsed in
Python; the ceiling for reading this fake), ``websockets`` (``async for`` over the connection,
text decoded to ``str``), ``websockets-bytes`` (``recv(decode=False)``), ``aiohttp``
(``ws_connect``, ``async for``), ``picows`` (its ``on_ws_frame`` callback). All on uvloop.

In the loop each client only stores ``(time.time_ns(), frame)``; trade ids are decoded after the
end marker. Writes OUT.json: frames, trade ids with their receipt times, end-marker time, CPU.
Standalone (stdlib, orjson, uvloop, the client library), so it runs in a throwaway venv.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop

END_MARKER_MAX_LEN = 48  # bench/e2e_frames.END_MARKER; no market-data frame is this short
Frame = str | bytes
Received = list[tuple[int, Frame]]
LIBRARIES = {
    "websockets": "websockets.asyncio.client",
    "websockets-bytes": "websockets.asyncio.client",
    "aiohttp": "aiohttp",
    "picows": "picows",
}


async def read_raw(url: str, received: Received) -> None:
    parts = urlsplit(url)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()
            self.upgraded = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            transport.write(request.encode())  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            now = time.time_ns()
            buf = self.buffer
            buf += data
            if not self.upgraded:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[: end + 4]
                self.upgraded = True
            pos, size_all = 0, len(buf)
            while size_all - pos >= 2:
                size, start = buf[pos + 1] & 0x7F, pos + 2
                if size == 126:
                    if size_all - pos < 4:
                        break
                    size, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
                elif size == 127:
                    if size_all - pos < 10:
                        break
                    size, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
                if size_all < start + size:
                    break
                payload = bytes(buf[start : start + size])
                received.append((now, payload))
                pos = start + size
                if size < END_MARKER_MAX_LEN and not done.done():
                    done.set_result(None)
            del buf[:pos]

    transport, _ = await asyncio.get_running_loop().create_connection(
        Reader, parts.hostname or "127.0.0.1", parts.port or 80
    )
    await done
    transport.close()


async def read_websockets(url: str, received: Received, decode: bool) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        while True:
            frame = await ws.recv(decode=decode)
            received.append((time.time_ns(), frame))
            if len(frame) < END_MARKER_MAX_LEN:
                return


async def read_aiohttp(url: str, received: Received) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        async for msg in ws:
            data = msg.data
            received.append((time.time_ns(), data))
            if len(data) < END_MARKER_MAX_LEN:
                return


async def read_picows(url: str, received: Received) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):  # type: ignore[misc, unused-ignore]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                now = time.time_ns()
                payload = frame.get_payload_as_bytes()
                received.append((now, payload))
                if len(payload) < END_MARKER_MAX_LEN:
                    transport.disconnect()

    transport, _ = await ws_connect(Listener, url, max_frame_size=2**24)
    await transport.wait_disconnected()


def report(received: Received) -> dict[str, Any]:
    ids, recv_ns = [], []
    for ns, frame in received:
        if len(frame) < END_MARKER_MAX_LEN:
            continue
        data = orjson.loads(frame)["data"]
        if data["e"] in ("trade", "aggTrade"):
            ids.append(data["t"] if "t" in data else data["a"])
            recv_ns.append(ns)
    return {"frames": len(received), "trade_ids": ids, "recv_ns": recv_ns, "end_ns": received[-1][0]}


async def main_async(client: str, url: str) -> dict[str, Any]:
    received: Received = []
    if client in LIBRARIES:
        importlib.import_module(LIBRARIES[client])  # imported before the CPU clock starts
    cpu0 = time.process_time()
    if client == "raw":
        await read_raw(url, received)
    elif client in ("websockets", "websockets-bytes"):
        await read_websockets(url, received, decode=client == "websockets")
    elif client == "aiohttp":
        await read_aiohttp(url, received)
    elif client == "picows":
        await read_picows(url, received)
    else:
        raise SystemExit(f"unknown client {client!r}")
    cpu_s = time.process_time() - cpu0  # connecting, then reading: the fake sends nothing else
    return report(received) | {"cpu_s": cpu_s}


def main() -> None:
    client, url, out = sys.argv[1], sys.argv[2], sys.argv[3]
    result = uvloop.run(main_async(client, url))
    with open(out, "wb") as file:
        file.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
