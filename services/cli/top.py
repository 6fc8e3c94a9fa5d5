"""``hftfeed top``: a live view of the stack, refreshed from the services' health and the bus.

Each refresh asks every service for its health (request/reply) and adds what this process saw on
the bus since the last one: trades and depth of every instrument (``md.*.trades``, ``md.*.depth``:
rates, lag from the venue and from the feed), a book per instrument kept by the same
``BookKeeper`` context uses (so its ladder is the feed's book, or says it is resyncing), the last
``md.*.status`` and ``signals.>``. ``top_model`` turns that into a snapshot and ``top_view`` draws it:
full screen in a terminal; in a pipe or a file each refresh is printed as text (``--json``: the
snapshot itself). Ctrl-C, SIGTERM or a reader that goes away end it quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live

from schemas import subjects
from schemas.rules import RuleViolation
from schemas.wire import decode_depth
from services.cli.client import SERVICES, ask_health
from services.cli.output import Output
from services.cli.top_model import Health, counter_rates, percentiles
from services.cli.top_view import LADDER_LEVELS, render, render_text
from services.common.book_keeper import BookKeeper
from services.common.bus import Bus, BusConnectError, Msg, settled
from services.common.logging import configure_logging
from services.common.natsauth import NatsSecurity, redact_url

#: Instruments followed at most (a flood of ids cannot grow top's state); lag samples kept per kind.
MAX_INSTRUMENTS = 200
MAX_SAMPLES = 4096
SIGNALS_SHOWN = 10


class _Instrument:
    """What top saw of one instrument since the last refresh (and its book, kept all along)."""

    def __init__(self, symbol: str, bus: Bus) -> None:
        async def request(subject: str, body: bytes) -> tuple[dict[str, str], bytes]:
            reply = await bus.request(subject, body, timeout_s=2.0)
            return dict(reply.headers or {}), reply.data

        self.keeper = BookKeeper(symbol, request)
        self.trades = 0
        self.depth = 0
        self.venue_lag_ms: deque[float] = deque(maxlen=MAX_SAMPLES)
        self.bus_lag_ms: deque[float] = deque(maxlen=MAX_SAMPLES)
        self.last_trade: dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None

    def lag(self, ts_event: object, ts_recv: object) -> None:
        if isinstance(ts_recv, int):
            self.bus_lag_ms.append((time.time_ns() - ts_recv) / 1e6)
            if isinstance(ts_event, int):
                self.venue_lag_ms.append((ts_recv - ts_event) / 1e6)

    def take(self, dt_s: float) -> dict[str, Any]:
        """This interval's view (and start the next one)."""
        keeper = self.keeper
        book = keeper.book
        view = {
            "book": {
                "state": keeper.state,
                "reason": keeper.reason,
                "seq": keeper.seq,
                "feed_run": keeper.feed_run,
                "levels": len(book),
                "gaps": keeper.stats.gaps,
                "bids": [list(level) for level in book.bids(LADDER_LEVELS)],
                "asks": [list(level) for level in book.asks(LADDER_LEVELS)],
            },
            "status": self.status,
            "last_trade": self.last_trade,
            "trades_per_s": self.trades / dt_s if dt_s > 0 else None,
            "depth_per_s": self.depth / dt_s if dt_s > 0 else None,
            "lag_ms": {"venue": percentiles(self.venue_lag_ms), "bus": percentiles(self.bus_lag_ms)},
        }
        self.trades = self.depth = 0
        self.venue_lag_ms.clear()
        self.bus_lag_ms.clear()
        return view


class TopCollector:
    def __init__(self, bus: Bus, url: str, interval_s: float, timeout_s: float) -> None:
        self.bus = bus
        self.url = redact_url(url)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.instruments: dict[str, _Instrument] = {}
        self.signals: deque[dict[str, Any]] = deque(maxlen=SIGNALS_SHOWN)
        self.ignored = 0  # messages of instruments past MAX_INSTRUMENTS, or unreadable ones
        self._health: dict[str, Health] | None = None
        self._taken = time.monotonic()
        bus.on_loss(self._lost)

    async def start(self) -> None:
        for pattern, handler in (
            (subjects.ALL_TRADES, self._on_trade),
            (subjects.ALL_DEPTH, self._on_depth),
            (subjects.ALL_STATUS, self._on_status),
            (subjects.ALL_SIGNALS, self._on_signal),
        ):
            await self.bus.subscribe(pattern, handler)
        await settled(self.bus.nc)

    def _instrument(self, subject: str) -> _Instrument | None:
        symbol = subject.split(".")[1]
        instrument = self.instruments.get(symbol)
        if instrument is None and len(self.instruments) < MAX_INSTRUMENTS:
            instrument = self.instruments[symbol] = _Instrument(symbol, self.bus)
        if instrument is None:
            self.ignored += 1
        return instrument

    async def _on_trade(self, msg: Msg) -> None:
        instrument = self._instrument(msg.subject)
        try:
            trade = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            self.ignored += 1
            return
        if instrument is None or not isinstance(trade, dict):
            return
        instrument.trades += 1
        instrument.lag(trade.get("ts_event"), trade.get("ts_recv"))
        instrument.last_trade = {k: trade.get(k) for k in ("price", "qty", "side", "ts_event")}

    async def _on_depth(self, msg: Msg) -> None:
        instrument = self._instrument(msg.subject)
        if instrument is None:
            return
        try:
            update = decode_depth(msg.data)
        except RuleViolation:
            self.ignored += 1
            return
        instrument.depth += 1
        instrument.lag(update.ts_event, update.ts_recv)
        instrument.keeper.on_depth(update)

    async def _on_status(self, msg: Msg) -> None:
        instrument = self._instrument(msg.subject)
        with contextlib.suppress(orjson.JSONDecodeError):
            status = orjson.loads(msg.data)
            if instrument is not None and isinstance(status, dict):
                instrument.status = {k: status.get(k) for k in ("state", "stream", "reason", "ts")}

    async def _on_signal(self, msg: Msg) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(msg.data)
            if isinstance(body, dict):
                keys = ("strategy", "symbol", "side", "strength", "reason", "ts")
                self.signals.appendleft({"subject": msg.subject, **{k: body.get(k) for k in keys}})

    def _lost(self, reason: str) -> None:
        for instrument in self.instruments.values():
            instrument.keeper.lost(reason, f"messages may have been lost ({reason})")

    async def snapshot(self) -> dict[str, Any]:
        """One refresh: the services' health now, and what the bus showed since the last refresh."""
        nc = self.bus.nc
        replies = await asyncio.gather(*(ask_health(nc, s, self.timeout_s) for s in SERVICES))
        health = dict(zip(SERVICES, replies, strict=True))
        now = time.monotonic()
        dt_s, self._taken = now - self._taken, now
        previous, self._health = self._health, health
        return {
            "ts": time.time_ns(),
            "url": self.url,
            "interval_s": self.interval_s,
            "health": health,
            "rates": counter_rates(previous, health, dt_s),
            "instruments": {s: i.take(dt_s) for s, i in sorted(self.instruments.items())},
            "signals": list(self.signals),
            "ignored_messages": self.ignored,
        }

    async def close(self) -> None:
        for instrument in self.instruments.values():
            await instrument.keeper.close()


async def run_top(
    url: str, interval_s: float, iterations: int, as_json: bool, timeout_s: float, security: NatsSecurity
) -> int:
    out = Output()
    configure_logging("ERROR", stream=sys.stderr)  # book resyncs are on the screen, not in between
    try:
        bus = await Bus.connect(url, "hftfeed_top", timeout_s=3.0, security=security)
    except BusConnectError as error:
        sys.stderr.write(
            f"{error}\n  Is the stack running? Start it with `hftfeed up` (or `docker compose up -d`),\n"
            "  or set NATS_URL (in the environment or .env) to your NATS server.\n"
        )
        return 1
    collector = TopCollector(bus, url, interval_s, timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    out.watch_reader(loop, stop.set)
    live = Live(console=Console(), screen=True, auto_refresh=False) if out.terminal and not as_json else None
    try:
        await collector.start()
        await collector.snapshot()  # the baseline of the rates
        with live or contextlib.nullcontext():
            refreshes = 0
            while not stop.is_set() and not out.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)
                if stop.is_set():
                    break
                snapshot = await collector.snapshot()
                refreshes += 1
                if as_json:
                    out.write(orjson.dumps(snapshot).decode() + "\n")
                elif live is not None:
                    live.update(render(snapshot), refresh=True)
                else:
                    out.write(render_text(snapshot) + "\n")
                if iterations and refreshes >= iterations:
                    break
    finally:
        out.stop_watching(loop)
        await collector.close()
        await bus.drain()
    return 0
