"""A fake Binance (spot or USD-M futures) on loopback, for the Binance connector's tests.

Formats follow Binance's documentation as summarised in the shared reference notes
(``binance.md`` §3.1-3.6): numbers are decimal strings, ids and times are integers (ms),
stream names carry the symbol in lower case.

Usage::

    async with FakeBinance(market="usdm") as venue:
        venue.set_snapshot("BTCUSDT", 100, [["50000.00", "1.0"]], [["50000.10", "2.0"]])
        ...  # start the connector at venue.ws_url / venue.rest_url
        await venue.wait_for_subscribers(["btcusdt@depth@100ms"])
        await venue.send("btcusdt@depth@100ms", futures_depth_diff(...))

What the fake serves:

* WebSocket (``ws_url``): combined streams ``/stream?streams=a/b`` and raw ``/ws/<stream>``;
  on ``market="usdm"`` also the routed ``/public/...`` (depth*, bookTicker) and
  ``/market/...`` (everything else). A futures connection without a routed path
  receives public data only: its trade streams are accepted and stay silent, as on the
  real venue. Live ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/
  ``SET_PROPERTY``/``GET_PROPERTY`` are answered. Every connection is recorded.
* Modes that disagree with the client (``FakeBinance(start_delay=, lag=, deaf=)``, ``mute``,
  ``freeze``): each socket gets its streams only from its own start on, 200-400 ms after the
  handshake (not in lockstep with an older socket, which keeps delivering what the new one never
  sends); each socket delivers late by a latency of its own; a venue that never reads what the
  client sends (no close answered, no pong, no subscription reply); a stream stuck on the sockets
  open now (``mute``); a socket silent with its TCP connection open (``freeze``: half-open).
* REST (``rest_url``): ``GET /api/v3/depth`` (spot) or ``GET /fapi/v1/depth`` (usdm), with
  the ``X-MBX-USED-WEIGHT-1M`` header, scripted rejections (429/418 + ``Retry-After``)
  and a gate to hold snapshot responses.

Frame builders (pure functions) and ``book_scenario`` (a deterministic snapshot + diffs
+ expected book generator) live here too, as do helpers to read the hand-written
fixtures in ``tests/data/binance/``.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Market = Literal["spot", "usdm"]
Route = Literal["spot", "public", "market", "unrouted"]
LevelsIn = Iterable[Sequence[str]]
"""Price levels as given by a test: ``[[price, qty], ...]`` with decimal strings."""

FIXTURES_DIR = Path(__file__).parent / "data" / "binance"

MALFORMED_KINDS: tuple[str, ...] = (
    "not-json",
    "truncated-json",
    "json-array",
    "missing-data",
    "data-without-e",
    "trade-missing-p",
    "trade-p-nan",
    "trade-negative-qty",
    "depth-U-greater-than-u",
    "unknown-event-type",
)
"""What each line of ``malformed_frames.txt`` is, in file order (use as pytest ids)."""

SPOT_MAX_STREAMS = 1024
USDM_MAX_STREAMS = 200  # the stored copies of the futures page disagree (200 or 1024): be strict

_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


# ---------------------------------------------------------------------------------------------
# Frame builders
# ---------------------------------------------------------------------------------------------


def _levels(levels: LevelsIn) -> list[list[str]]:
    out: list[list[str]] = []
    for level in levels:
        price, qty = level
        out.append([price, qty])
    return out


def stream_name(symbol: str, kind: str) -> str:
    """``stream_name("BTCUSDT", "depth@100ms") == "btcusdt@depth@100ms"``."""
    return f"{symbol.lower()}@{kind}"


def combined(stream: str, payload: Any) -> dict[str, Any]:
    """The combined-stream envelope ``{"stream": ..., "data": ...}``."""
    return {"stream": stream, "data": payload}


def spot_trade(
    symbol: str,
    trade_id: int,
    price: str,
    qty: str,
    buyer_is_maker: bool,
    ts_ms: int,
    *,
    event_time_ms: int | None = None,
) -> dict[str, Any]:
    """``<symbol>@trade`` payload; ``E`` defaults to the trade time ``T``."""
    return {
        "e": "trade",
        "E": ts_ms if event_time_ms is None else event_time_ms,
        "s": symbol.upper(),
        "t": trade_id,
        "p": price,
        "q": qty,
        "T": ts_ms,
        "m": buyer_is_maker,
        "M": True,
    }


def agg_trade(
    symbol: str,
    agg_id: int,
    price: str,
    qty: str,
    buyer_is_maker: bool,
    ts_ms: int,
    first_id: int,
    last_id: int,
    futures: bool = False,
    *,
    event_time_ms: int | None = None,
) -> dict[str, Any]:
    """``<symbol>@aggTrade`` payload; the futures one has no ``M``."""
    payload: dict[str, Any] = {
        "e": "aggTrade",
        "E": ts_ms if event_time_ms is None else event_time_ms,
        "s": symbol.upper(),
        "a": agg_id,
        "p": price,
        "q": qty,
        "f": first_id,
        "l": last_id,
        "T": ts_ms,
        "m": buyer_is_maker,
    }
    if not futures:
        payload["M"] = True
    return payload


def futures_trade(
    symbol: str,
    trade_id: int,
    price: str,
    qty: str,
    buyer_is_maker: bool,
    ts_ms: int,
    kind: str = "MARKET",
) -> dict[str, Any]:
    """USD-M ``<symbol>@trade`` payload (``e,E,T,s,t,p,q,X,m``): ``X`` is MARKET for a trade, or
    INSURANCE_FUND, ADL, NA for other prints."""
    return {
        "e": "trade",
        "E": ts_ms + 1,
        "T": ts_ms,
        "s": symbol.upper(),
        "t": trade_id,
        "p": price,
        "q": qty,
        "X": kind,
        "m": buyer_is_maker,
    }


def spot_depth_diff(
    symbol: str, first_id: int, last_id: int, bids: LevelsIn, asks: LevelsIn, ts_ms: int
) -> dict[str, Any]:
    """Spot ``<symbol>@depth[@100ms]`` payload (``e,E,s,U,u,b,a``)."""
    return {
        "e": "depthUpdate",
        "E": ts_ms,
        "s": symbol.upper(),
        "U": first_id,
        "u": last_id,
        "b": _levels(bids),
        "a": _levels(asks),
    }


def futures_depth_diff(
    symbol: str,
    first_id: int,
    last_id: int,
    prev_last_id: int,
    bids: LevelsIn,
    asks: LevelsIn,
    ts_ms: int,
    *,
    transaction_time_ms: int | None = None,
) -> dict[str, Any]:
    """USD-M ``<symbol>@depth[@500ms|@100ms]`` payload (``e,E,T,s,U,u,pu,b,a``); ``T`` defaults to ``E``."""
    return {
        "e": "depthUpdate",
        "E": ts_ms,
        "T": ts_ms if transaction_time_ms is None else transaction_time_ms,
        "s": symbol.upper(),
        "U": first_id,
        "u": last_id,
        "pu": prev_last_id,
        "b": _levels(bids),
        "a": _levels(asks),
    }


def spot_partial_book(last_update_id: int, bids: LevelsIn, asks: LevelsIn) -> dict[str, Any]:
    """Spot ``<symbol>@depth<5|10|20>[@100ms]`` payload: no event type, symbol or time."""
    return {"lastUpdateId": last_update_id, "bids": _levels(bids), "asks": _levels(asks)}


def futures_partial_book(
    symbol: str,
    first_id: int,
    last_id: int,
    prev_last_id: int,
    bids: LevelsIn,
    asks: LevelsIn,
    ts_ms: int,
    *,
    transaction_time_ms: int | None = None,
) -> dict[str, Any]:
    """USD-M ``<symbol>@depth<5|10|20>[@500ms|@100ms]`` payload: a full depthUpdate of the top N levels."""
    return futures_depth_diff(
        symbol,
        first_id,
        last_id,
        prev_last_id,
        bids,
        asks,
        ts_ms,
        transaction_time_ms=transaction_time_ms,
    )


def subscription_reply(id: int | str | None) -> dict[str, Any]:
    """Reply to a successful SUBSCRIBE/UNSUBSCRIBE/SET_PROPERTY."""
    return {"result": None, "id": id}


def error_reply(
    code: int,
    msg: str,
    id: int | str | None,
    *,
    nested: bool = False,
) -> dict[str, Any]:
    """A WebSocket control error.

    The spot docs' table shows the flat shape ``{"code": 2, "msg": "...", "id": 1}``;
    the venue has also been seen answering ``{"error": {"code": 2, "msg": "..."}, "id": 1}``
    (``nested=True``). Connectors should tolerate both.
    """
    if nested:
        return {"error": {"code": code, "msg": msg}, "id": id}
    return {"code": code, "msg": msg, "id": id}


def server_shutdown(ts_ms: int, combined: bool) -> dict[str, Any]:
    """``serverShutdown`` as a raw event or wrapped in the ``!serverShutdown`` combined envelope."""
    event = {"e": "serverShutdown", "E": ts_ms}
    return {"stream": "!serverShutdown", "data": event} if combined else event


def dumps(payload: Any) -> str:
    """Compact JSON text, as Binance sends it (text frames)."""
    return orjson.dumps(payload).decode()


def futures_route(stream: str) -> Literal["public", "market"]:
    """Which USD-M routed path carries ``stream``: ``public`` for depth*/bookTicker, else ``market``."""
    name = stream[1:] if stream.startswith("!") else stream.partition("@")[2]
    return "public" if name.startswith(("depth", "bookTicker")) else "market"


# ---------------------------------------------------------------------------------------------
# Fixtures on disk
# ---------------------------------------------------------------------------------------------


def fixture_path(name: str) -> Path:
    return FIXTURES_DIR / name


def load_jsonl(name: str) -> list[dict[str, Any]]:
    """Parse a ``.jsonl`` fixture (one JSON object per non-empty line)."""
    lines = fixture_path(name).read_text(encoding="utf-8").splitlines()
    out: list[dict[str, Any]] = []
    for line in lines:
        if line.strip():
            value = orjson.loads(line)
            if not isinstance(value, dict):
                raise ValueError(f"{name}: not a JSON object: {line[:80]}")
            out.append(value)
    return out


def load_lines(name: str) -> list[str]:
    """The raw non-empty lines of a fixture (e.g. ``malformed_frames.txt``), unparsed."""
    return [line for line in fixture_path(name).read_text(encoding="utf-8").splitlines() if line]


def load_json(name: str) -> dict[str, Any]:
    value = orjson.loads(fixture_path(name).read_bytes())
    if not isinstance(value, dict):
        raise ValueError(f"{name}: not a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# The fake venue
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeConnection:
    """One WebSocket connection as the server saw it."""

    ws: ServerConnection
    path: str
    """Request path without the query, e.g. ``/market/stream`` or ``/ws/btcusdt@trade``."""
    route: Route
    combined: bool
    """Frames are wrapped in ``{"stream","data"}`` (``/stream``; togglable by SET_PROPERTY)."""
    streams: list[str]
    """Current subscriptions in order: from the URL, then live SUBSCRIBE/UNSUBSCRIBE."""
    opened_at: float
    """``time.monotonic()`` when the handshake completed."""
    closed: bool = False
    closed_at: float | None = None
    received: list[str] = field(default_factory=list)
    """Text of every message the client sent (control messages)."""
    frames_sent: int = 0
    starts_at: float = 0.0
    """``time.monotonic()`` from which its streams flow (``start_delay`` after the handshake)."""
    lag_s: float = 0.0
    """How late it delivers every frame (its own latency; frames stay in order)."""
    muted: set[str] = field(default_factory=set)
    """Streams stuck on this socket (``FakeBinance.mute``): subscribed, never delivered."""
    frozen: bool = False
    """Half-open (``FakeBinance.freeze``): sends nothing and reads nothing, TCP stays open."""
    outbox: asyncio.Queue[tuple[float, str | bytes]] | None = None

    def carries(self, stream: str) -> bool:
        """Whether this connection's path can deliver ``stream`` at all (USD-M routing)."""
        if self.route in ("spot", "market"):
            return self.route == "spot" or futures_route(stream) == "market"
        return futures_route(stream) == "public"  # /public and unrouted paths

    def delivers(self, stream: str) -> bool:
        """Subscribed, carried by this path, started, not muted and not frozen."""
        return (
            stream in self.streams
            and self.carries(stream)
            and not self.frozen
            and stream not in self.muted
            and time.monotonic() >= self.starts_at
        )

    @property
    def silenced_streams(self) -> list[str]:
        """Subscribed streams this path will never deliver (the silent routed-endpoint failure)."""
        return [s for s in self.streams if not self.carries(s)]


class SnapshotRequest(NamedTuple):
    symbol: str
    limit: int
    """Effective limit (the default when absent, 0 when not an integer)."""
    at: float
    """``time.monotonic()`` when the request arrived."""


@dataclass
class _StoredSnapshot:
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]
    event_time_ms: int | None
    transaction_time_ms: int | None


class _ParsedPath(NamedTuple):
    route: Route
    path: str
    combined: bool
    streams: list[str]


def _spot_weight(limit: int) -> int:
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _usdm_weight(limit: int) -> int:
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"


class FakeBinance:
    """Fake spot (``market="spot"``) or USD-M futures (``market="usdm"``) venue on 127.0.0.1."""

    def __init__(
        self,
        market: Market = "spot",
        *,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        max_streams: int | None = None,
        nested_errors: bool = False,
        start_delay: tuple[float, float] | None = None,
        lag: tuple[float, float] | None = None,
        deaf: bool = False,
        seed: int = 0,
    ) -> None:
        """``ping_interval``/``ping_timeout`` default to the venue's (spot 20 s/60 s, usdm 180 s/600 s);
        ``max_streams`` (default 1024 spot, 200 usdm) rejects bigger URLs with HTTP 400;
        ``nested_errors`` answers bad control messages as ``{"error":{...},"id":..}``.

        Out of step (default: every socket in lockstep, at once): ``start_delay=(lo, hi)`` starts each
        socket's streams a random time in [lo, hi] after its handshake; ``lag=(lo, hi)`` delays every
        frame of a socket by its own random latency; ``deaf`` never reads what clients send (no close
        frame, ping or control message answered), data still flows. ``seed`` fixes the draws.
        """
        if market not in ("spot", "usdm"):
            raise ValueError(f"market must be 'spot' or 'usdm', not {market!r}")
        self.market: Market = market
        spot = market == "spot"
        self._ping_interval = ping_interval if ping_interval is not None else (20.0 if spot else 180.0)
        self._ping_timeout = ping_timeout if ping_timeout is not None else (60.0 if spot else 600.0)
        self.max_streams = (
            max_streams if max_streams is not None else (SPOT_MAX_STREAMS if spot else USDM_MAX_STREAMS)
        )
        self.nested_errors = nested_errors
        self.start_delay = start_delay
        self.lag = lag
        self.deaf = deaf
        self._rng = random.Random(seed)
        self._senders: set[asyncio.Task[None]] = set()
        self.connections: list[FakeConnection] = []
        self.snapshot_requests: list[SnapshotRequest] = []
        self.used_weight = 0
        """Running REST weight (reported in ``X-MBX-USED-WEIGHT-1M``); never decays by itself."""
        self.rejected_handshakes: list[tuple[str, int]] = []
        """``(request path, HTTP status)`` of every refused WebSocket handshake."""
        self._snapshots: dict[str, _StoredSnapshot] = {}
        self._rejections: deque[tuple[int, int | None]] = deque()
        self._hold: asyncio.Event | None = None
        self._changed = asyncio.Condition()
        self._ws_server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._ws_port: int | None = None
        self._rest_port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeBinance:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._ws_server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=1,
        )
        self._ws_port = int(self._ws_server.sockets[0].getsockname()[1])

        app = web.Application()
        app.router.add_get("/api/v3/depth" if self.market == "spot" else "/fapi/v1/depth", self._depth)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._rest_port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self.release_snapshots()
        for conn in self.connections:  # a socket that reads nothing cannot close politely
            if conn.frozen or self.deaf:
                conn.ws.transport.abort()
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (no trailing slash)."""
        if self._ws_port is None:
            raise RuntimeError("FakeBinance is not started")
        return f"ws://127.0.0.1:{self._ws_port}"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._rest_port is None:
            raise RuntimeError("FakeBinance is not started")
        return f"http://127.0.0.1:{self._rest_port}"

    def stream_url(self, streams: Sequence[str], prefix: str = "") -> str:
        """``ws_url + prefix + "/stream?streams=a/b"``; prefix ``""``, ``"/public"`` or ``"/market"``."""
        return f"{self.ws_url}{prefix}/stream?streams={'/'.join(streams)}"

    # -- WebSocket side ---------------------------------------------------------------------

    @property
    def open_connections(self) -> list[FakeConnection]:
        return [c for c in self.connections if not c.closed]

    def _parse_path(self, raw: str) -> _ParsedPath | None:
        parts = urlsplit(raw)
        path = parts.path
        route: Route = "spot"
        rest = path
        if self.market == "usdm":
            route = "unrouted"
            for prefix in ("/public", "/market"):
                if path.startswith(prefix + "/"):
                    route = "public" if prefix == "/public" else "market"
                    rest = path[len(prefix) :]
                    break
        if rest in ("/stream", "/stream/"):
            values = parse_qs(parts.query, keep_blank_values=True).get("streams", [""])
            streams = [s for s in values[0].split("/") if s]
            return _ParsedPath(route, path, True, streams)
        if rest == "/ws" or rest.startswith("/ws/"):
            return _ParsedPath(route, path, False, [s for s in rest[4:].split("/") if s])
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parsed = self._parse_path(request.path)
        if parsed is None:
            self.rejected_handshakes.append((request.path, 404))
            return connection.respond(404, "Not Found\n")
        if len(parsed.streams) > self.max_streams:
            self.rejected_handshakes.append((request.path, 400))
            return connection.respond(400, f"too many streams ({len(parsed.streams)} > {self.max_streams})\n")
        return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parsed = self._parse_path(ws.request.path)
        assert parsed is not None  # _process_request refused the others
        opened = time.monotonic()
        conn = FakeConnection(
            ws=ws,
            path=parsed.path,
            route=parsed.route,
            combined=parsed.combined,
            streams=list(dict.fromkeys(parsed.streams)),
            opened_at=opened,
            starts_at=opened + (self._rng.uniform(*self.start_delay) if self.start_delay else 0.0),
            lag_s=self._rng.uniform(*self.lag) if self.lag else 0.0,
        )
        if conn.lag_s > 0:
            conn.outbox = asyncio.Queue()
            sender = asyncio.create_task(self._deliver_late(conn))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        self.connections.append(conn)
        if self.deaf:
            ws.transport.pause_reading()
        await self._notify()
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                conn.received.append(text)
                reply = self._control(conn, text)
                if reply is not None:
                    await ws.send(dumps(reply))
                    await self._notify()
        except ConnectionClosed:
            pass
        finally:
            if not conn.closed:
                conn.closed = True
                conn.closed_at = time.monotonic()
            await self._notify()

    def _error(self, code: int, msg: str, req_id: Any) -> dict[str, Any]:
        return error_reply(code, msg, req_id, nested=self.nested_errors)

    def _control(self, conn: FakeConnection, text: str) -> dict[str, Any] | None:
        """Answer a client message like the venue's live-subscription API."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}
        if not isinstance(msg, dict):
            return {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}
        req_id = msg.get("id")
        if req_id is not None and not isinstance(req_id, int | str):
            return self._error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = msg.get("method")
        params = msg.get("params", [])
        if method is None:
            return self._error(2, "Invalid request: missing field `method` at line 1 column 1", req_id)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return self._error(2, "Invalid request: params must be a list of strings", req_id)
            for stream in params:
                if method == "SUBSCRIBE" and stream not in conn.streams:
                    conn.streams.append(stream)
                elif method == "UNSUBSCRIBE" and stream in conn.streams:
                    conn.streams.remove(stream)
            return subscription_reply(req_id)
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.streams), "id": req_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                return self._error(0, "Unknown property", req_id)
            if method == "GET_PROPERTY":
                return {"result": conn.combined, "id": req_id}
            if len(params) != 2 or not isinstance(params[1], bool):
                return self._error(1, "Invalid value type: expected Boolean", req_id)
            conn.combined = params[1]
            return subscription_reply(req_id)
        return self._error(
            2, f"Invalid request: unknown variant {method}, expected one of {_METHODS}", req_id
        )

    async def _send_text(self, conn: FakeConnection, text: str | bytes) -> bool:
        if conn.frozen:
            return False
        if conn.outbox is not None:  # delivered late, in order, by the socket's own sender
            conn.outbox.put_nowait((time.monotonic() + conn.lag_s, text))
            conn.frames_sent += 1
            return True
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            return False
        conn.frames_sent += 1
        return True

    async def _deliver_late(self, conn: FakeConnection) -> None:
        assert conn.outbox is not None
        while True:
            due, text = await conn.outbox.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if conn.frozen:
                continue
            try:
                await conn.ws.send(text)
            except ConnectionClosed:
                return

    async def send(self, stream: str, payload: Any) -> int:
        """Push ``payload`` on ``stream`` to every open connection that delivers it.

        Combined connections get ``{"stream": stream, "data": payload}``, raw ones the payload.
        Returns how many connections it was sent to.
        """
        wrapped = dumps(combined(stream, payload))
        raw = dumps(payload)
        sent = 0
        for conn in list(self.connections):
            if not conn.closed and conn.delivers(stream):
                sent += await self._send_text(conn, wrapped if conn.combined else raw)
        return sent

    async def send_raw(self, text: str | bytes, path_prefix: str | None = None) -> int:
        """Send ``text`` as-is to every open connection (whose path starts with ``path_prefix``);
        ``bytes`` go out as a binary frame."""
        sent = 0
        for conn in list(self.connections):
            if conn.closed or (path_prefix is not None and not conn.path.startswith(path_prefix)):
                continue
            sent += await self._send_text(conn, text)
        return sent

    async def _wait(self, predicate: Callable[[], bool], limit_s: float, what: Callable[[], str]) -> None:
        try:
            async with asyncio.timeout(limit_s), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(f"FakeBinance: {what()} within {limit_s}s") from None

    async def wait_for_subscribers(
        self,
        streams: Iterable[str],
        timeout: float = 5,  # noqa: ASYNC109 - the brief's signature
    ) -> list[FakeConnection]:
        """Wait until every stream is subscribed on some open connection; return those connections.

        A subscription counts even if its path silences it (see ``FakeConnection.delivers``).
        """
        wanted = list(streams)

        def missing() -> list[str]:
            open_ = self.open_connections
            return [s for s in wanted if not any(s in c.streams for c in open_)]

        await self._wait(lambda: not missing(), timeout, lambda: f"no open subscriber for {missing()}")
        return [c for c in self.open_connections if any(s in c.streams for s in wanted)]

    async def wait_for_connections(
        self,
        count: int,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> None:
        """Wait until at least ``count`` connections have been opened (closed ones included)."""
        await self._wait(
            lambda: len(self.connections) >= count,
            timeout,
            lambda: f"{len(self.connections)} of {count} connections opened",
        )

    def streaming(self, streams: Iterable[str]) -> bool:
        """Whether every stream flows now on some open socket (started, not muted, not frozen)."""
        return all(any(c.delivers(s) for c in self.open_connections) for s in streams)

    def mute(self, stream: str) -> list[FakeConnection]:
        """``stream`` gets stuck on every socket open now (sockets opened later deliver it)."""
        stuck = [c for c in self.open_connections if stream in c.streams]
        for conn in stuck:
            conn.muted.add(stream)
        return stuck

    def freeze(self, path_prefix: str | None = None) -> list[FakeConnection]:
        """Half-open: the open sockets (whose path starts with ``path_prefix``) send nothing more and
        read nothing (no pong, no close answered); their TCP connections stay open."""
        frozen = [
            c
            for c in self.open_connections
            if not c.frozen and (path_prefix is None or c.path.startswith(path_prefix))
        ]
        for conn in frozen:
            conn.frozen = True
            conn.ws.transport.pause_reading()
        return frozen

    async def drop_connections(self, graceful: bool = False) -> int:
        """Close every open server-side socket; returns how many.

        Default: abort the TCP transport (the client sees close code 1006, no close frame).
        ``graceful=True``: a 1001 "going away" close frame, as before a planned shutdown.
        """
        dropped = 0
        for conn in self.open_connections:
            conn.closed = True
            conn.closed_at = time.monotonic()
            dropped += 1
            if graceful:
                await conn.ws.close(1001, "going away")
            else:
                conn.ws.transport.abort()
        await self._notify()
        return dropped

    # -- REST side --------------------------------------------------------------------------

    def set_snapshot(
        self,
        symbol: str,
        last_update_id: int,
        bids: LevelsIn,
        asks: LevelsIn,
        *,
        event_time_ms: int | None = None,
        transaction_time_ms: int | None = None,
    ) -> None:
        """What the depth endpoint returns for ``symbol`` (upper-case; replaced on each call).

        Levels are served best first (bids descending, asks ascending) and cut to ``limit``.
        Futures ``E``/``T`` default to the wall clock at response time.
        """
        bid_levels = sorted(_levels(bids), key=lambda lv: Decimal(lv[0]), reverse=True)
        ask_levels = sorted(_levels(asks), key=lambda lv: Decimal(lv[0]))
        self._snapshots[symbol.upper()] = _StoredSnapshot(
            last_update_id, bid_levels, ask_levels, event_time_ms, transaction_time_ms
        )

    def load_snapshot(self, snapshot: BookSnapshot) -> None:
        """``set_snapshot`` from a ``book_scenario`` snapshot."""
        self.set_snapshot(
            snapshot.symbol,
            snapshot.last_update_id,
            snapshot.bids,
            snapshot.asks,
            event_time_ms=snapshot.ts_ms,
            transaction_time_ms=snapshot.ts_ms,
        )

    def reject_next(self, status: int = 429, retry_after: int | None = 1, times: int = 1) -> None:
        """The next ``times`` snapshot requests answer ``status`` (+ ``Retry-After`` unless None)."""
        for _ in range(times):
            self._rejections.append((status, retry_after))

    def hold_snapshots(self) -> None:
        """Snapshot requests wait (already counted in ``snapshot_requests``) until released."""
        if self._hold is None:
            self._hold = asyncio.Event()

    def release_snapshots(self) -> None:
        """Let held snapshot requests answer (with the snapshot set at that moment)."""
        if self._hold is not None:
            self._hold.set()
            self._hold = None

    async def wait_for_snapshot_requests(
        self,
        count: int,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> None:
        """Wait until at least ``count`` snapshot requests have arrived."""
        await self._wait(
            lambda: len(self.snapshot_requests) >= count,
            timeout,
            lambda: f"{len(self.snapshot_requests)} of {count} snapshot requests",
        )

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        all_headers = {_WEIGHT_HEADER: str(self.used_weight)}
        all_headers.update(headers or {})
        return web.Response(
            status=status, body=orjson.dumps(body), content_type="application/json", headers=all_headers
        )

    async def _depth(self, request: web.Request) -> web.Response:
        spot = self.market == "spot"
        symbol = request.query.get("symbol", "")
        limit_text = request.query.get("limit")
        limit_ok = True
        if limit_text is None:
            limit = 100 if spot else 500
        else:
            try:
                limit = int(limit_text)
            except ValueError:
                limit, limit_ok = 0, False
            limit_ok = limit_ok and limit > 0
        self.snapshot_requests.append(SnapshotRequest(symbol, limit, time.monotonic()))
        self.used_weight += _spot_weight(limit) if spot else _usdm_weight(limit)
        await self._notify()

        hold = self._hold
        if hold is not None:
            await hold.wait()

        if self._rejections:
            status, retry_after = self._rejections.popleft()
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            if status == 418:
                until = int(time.time() * 1000) + 1000 * (retry_after or 60)
                msg = f"Way too much request weight used; IP banned until {until}."
            else:
                msg = "Too many requests"
            return self._json(status, {"code": -1003, "msg": msg}, headers)
        if not symbol:
            return self._json(
                400,
                {
                    "code": -1102,
                    "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                },
            )
        if not limit_ok:
            return self._json(
                400,
                {
                    "code": -1100,
                    "msg": "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
                },
            )
        snap = self._snapshots.get(symbol)
        if snap is None:
            return self._json(400, {"code": -1121, "msg": "Invalid symbol."})
        cut = min(limit, 5000 if spot else 1000)
        body: dict[str, Any] = {"lastUpdateId": snap.last_update_id}
        if not spot:
            now_ms = int(time.time() * 1000)
            body["E"] = snap.event_time_ms if snap.event_time_ms is not None else now_ms
            body["T"] = snap.transaction_time_ms if snap.transaction_time_ms is not None else now_ms
        body["bids"] = snap.bids[:cut]
        body["asks"] = snap.asks[:cut]
        return self._json(200, body)


# ---------------------------------------------------------------------------------------------
# Deterministic order-book scenario
# ---------------------------------------------------------------------------------------------

STALE_DIFFS = 3
"""``book_scenario`` puts this many diffs before the snapshot (fewer if ``n_diffs`` is small);
the diff at this index straddles the snapshot's ``last_update_id``."""

_TS0_MS = 1_770_000_000_000
_QTY_UNITS = 100_000_000  # 8 decimals


@dataclass(frozen=True)
class BookSnapshot:
    """A REST depth snapshot (levels best first, 8-decimal strings)."""

    symbol: str
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]
    ts_ms: int


@dataclass(frozen=True)
class ExpectedBook:
    """The book after the documented procedure: price string -> qty string, zero levels removed."""

    last_update_id: int
    bids: dict[str, str]
    asks: dict[str, str]


def _px(ticks: int) -> str:
    """Price in 0.01 ticks as an 8-decimal string."""
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def _qty(units: int) -> str:
    return f"{units // _QTY_UNITS}.{units % _QTY_UNITS:08d}"


class _Side:
    """One side of the generator's "true" book: price ticks -> qty units, plus sorted prices."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, int] = {}
        self.prices: list[int] = []  # ascending

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def near_top(self, rng: random.Random, depth: int = 30) -> int:
        i = rng.randrange(min(depth, len(self.prices)))
        return self.prices[-1 - i] if self.is_bid else self.prices[i]

    def set(self, price: int, qty: int) -> None:
        if qty == 0:
            if price in self.levels:
                del self.levels[price]
                del self.prices[bisect.bisect_left(self.prices, price)]
            return
        if price not in self.levels:
            bisect.insort(self.prices, price)
        self.levels[price] = qty

    def copy(self) -> _Side:
        other = _Side(self.is_bid)
        other.levels = dict(self.levels)
        other.prices = list(self.prices)
        return other

    def as_levels(self) -> list[list[str]]:
        order = reversed(self.prices) if self.is_bid else iter(self.prices)
        return [[_px(p), _qty(self.levels[p])] for p in order]

    def as_dict(self) -> dict[str, str]:
        return {_px(p): _qty(q) for p, q in self.levels.items()}


def _new_qty(rng: random.Random) -> int:
    return rng.randint(1_000, 250_000_000)  # 0.00001 .. 2.5


def _side_changes(rng: random.Random, side: _Side, n: int, bound: int) -> list[tuple[int, int]]:
    """``n`` distinct-price changes for ``side``; new prices stay on the bound's side
    (bids <= bound, asks >= bound). About 25 % are deletions, some of absent levels."""
    changes: dict[int, int] = {}
    direction = -1 if side.is_bid else 1
    attempts = 0
    while len(changes) < n and attempts < 20 * n:
        attempts += 1
        roll = rng.random()
        if roll < 0.25:  # deletion
            if side.prices and rng.random() < 0.8:
                price = side.near_top(rng)
            else:
                price = bound + direction * rng.randrange(60)
                if price in side.levels:
                    continue
            qty = 0
        elif roll < 0.6 and side.prices:  # new quantity at an existing level
            price, qty = side.near_top(rng), _new_qty(rng)
        else:  # new (or existing) level near the top
            price, qty = bound + direction * rng.randrange(40), _new_qty(rng)
        if price <= 0 or price in changes:
            continue
        changes[price] = qty
    ordered = sorted(changes.items(), reverse=side.is_bid)
    return ordered


def _replay_documented(
    market: Market, snapshot: BookSnapshot, diffs: Sequence[dict[str, Any]]
) -> ExpectedBook | None:
    """Binance's "manage a local order book" procedure, straightforwardly; None on a gap."""
    books: dict[str, dict[Decimal, tuple[str, str]]] = {
        "b": {Decimal(p): (p, q) for p, q in snapshot.bids},
        "a": {Decimal(p): (p, q) for p, q in snapshot.asks},
    }
    last = snapshot.last_update_id
    local: int | None = None
    for diff in diffs:
        first_id, last_id = int(diff["U"]), int(diff["u"])
        if local is None:
            if market == "spot":
                if last_id <= last:
                    continue
                if not first_id <= last + 1 <= last_id:
                    return None
            else:
                if last_id < last:
                    continue
                if not first_id <= last <= last_id:
                    return None
        elif market == "spot":
            if last_id < local:
                continue
            if first_id > local + 1:
                return None
        elif int(diff["pu"]) != local:
            return None
        for key in ("b", "a"):
            book = books[key]
            for price, qty in diff[key]:
                if Decimal(qty) == 0:
                    book.pop(Decimal(price), None)
                else:
                    book[Decimal(price)] = (price, qty)
        local = last_id
    return ExpectedBook(
        last_update_id=last if local is None else local,
        bids=dict(books["b"].values()),
        asks=dict(books["a"].values()),
    )


def book_scenario(
    symbol: str,
    market: Market,
    n_diffs: int,
    seed: int,
    levels: int = 1000,
    gap_at: int | None = None,
) -> tuple[BookSnapshot, list[dict[str, Any]], ExpectedBook | None]:
    """A deterministic snapshot + depthUpdate payloads + the book they imply.

    * ``snapshot``: ``last_update_id`` L and ``levels`` price levels per side at L (the diffs
      before L shift that a little), 8-decimal prices on a 0.01 tick around 50000,
      bids strictly below asks.
    * ``diffs`` (``n_diffs`` of them): ``diffs[:STALE_DIFFS]`` end at or before L and must be
      dropped; ``diffs[STALE_DIFFS]`` straddles L (spot ``U <= L+1 <= u``, futures
      ``U <= L <= u``; the snapshot then already holds a random part of it). Spot ids are
      contiguous (``U`` = previous ``u`` + 1, 1-5 ids per diff); futures ids jump by 1-40
      and ``pu`` = previous ``u``. Each diff has 1-20 levels per side, ~25 % deletions
      (qty ``"0.00000000"``, some of absent levels); the book never crosses.
    * ``expected_book``: the documented procedure applied to snapshot + diffs (checked
      against the generator's own book); ``None`` with ``gap_at``.

    ``gap_at=k`` leaves diff k out of the list so that a consumer must detect the gap;
    ``STALE_DIFFS <= k <= n_diffs - 2`` (a later diff must show the hole).
    """
    if market not in ("spot", "usdm"):
        raise ValueError(f"market must be 'spot' or 'usdm', not {market!r}")
    if n_diffs < 1 or levels < 1:
        raise ValueError("n_diffs and levels must be >= 1")
    stale = min(STALE_DIFFS, n_diffs - 1)
    if gap_at is not None and not stale <= gap_at <= n_diffs - 2:
        raise ValueError(f"gap_at must be in [{stale}, {n_diffs - 2}] for n_diffs={n_diffs}")
    rng = random.Random(f"{symbol}:{market}:{seed}")
    spot = market == "spot"
    sym = symbol.upper()

    bids, asks = _Side(True), _Side(False)
    best_bid = 5_000_000 + rng.randint(-20_000, 20_000)  # 50000.00 +- 200.00
    price = best_bid
    for _ in range(levels):
        bids.set(price, _new_qty(rng))
        price -= rng.choice((1, 1, 1, 2, 3, 5))
    price = best_bid + rng.randint(1, 3)
    for _ in range(levels):
        asks.set(price, _new_qty(rng))
        price += rng.choice((1, 1, 1, 2, 3, 5))
    mid = best_bid

    prev_u = rng.randrange(10**10, 9 * 10**10) if spot else rng.randrange(10**12, 9 * 10**12)
    snapshot: BookSnapshot | None = None
    diffs: list[dict[str, Any]] = []
    for i in range(n_diffs):
        first_id = prev_u + (1 if spot else rng.randint(1, 40))
        last_id = first_id + (rng.randint(0, 4) if spot else rng.randint(0, 9))
        ts_ms = _TS0_MS + 100 * (i + 1) + rng.randint(0, 5)

        before = (bids.copy(), asks.copy()) if i == stale else None
        best_ask = asks.best()
        old_best_bid = bids.best()
        if best_ask is not None:
            bid_bound = best_ask - 1
        else:
            bid_bound = (old_best_bid + 10) if old_best_bid is not None else mid
        bid_changes = _side_changes(rng, bids, rng.randint(1, 20), bid_bound)
        for p, q in bid_changes:
            bids.set(p, q)
        tops = [b for b in (old_best_bid, bids.best()) if b is not None]
        fallback = best_ask if best_ask is not None else mid + 1
        ask_bound = max(tops) + 1 if tops else fallback
        ask_changes = _side_changes(rng, asks, rng.randint(1, 20), ask_bound)
        for p, q in ask_changes:
            asks.set(p, q)

        b = [[_px(p), _qty(q)] for p, q in bid_changes]
        a = [[_px(p), _qty(q)] for p, q in ask_changes]
        if spot:
            diffs.append(spot_depth_diff(sym, first_id, last_id, b, a, ts_ms))
        else:
            diffs.append(
                futures_depth_diff(
                    sym, first_id, last_id, prev_u, b, a, ts_ms, transaction_time_ms=ts_ms - rng.randint(0, 3)
                )
            )

        if before is not None:
            snap_bids, snap_asks = before
            if spot:
                last = rng.randint(first_id - 1, last_id - 1)
                share = 0.0 if last == first_id - 1 else 0.5
            else:
                last = rng.randint(first_id, last_id)
                share = 1.0 if last == last_id else 0.5
            for side, changes in ((snap_bids, bid_changes), (snap_asks, ask_changes)):
                for p, q in changes:
                    if share >= 1.0 or (share > 0 and rng.random() < share):
                        side.set(p, q)
            snapshot = BookSnapshot(sym, last, snap_bids.as_levels(), snap_asks.as_levels(), ts_ms)
        prev_u = last_id

    assert snapshot is not None
    truth = ExpectedBook(prev_u, bids.as_dict(), asks.as_dict())
    if gap_at is not None:
        gapped = diffs[:gap_at] + diffs[gap_at + 1 :]
        if _replay_documented(market, snapshot, gapped) is not None:
            raise AssertionError("book_scenario: the gap is not detectable (generator bug)")
        return snapshot, gapped, None
    expected = _replay_documented(market, snapshot, diffs)
    if expected != truth:
        raise AssertionError("book_scenario: replay disagrees with the generated book (generator bug)")
    return snapshot, diffs, expected
