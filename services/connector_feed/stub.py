"""``StubbedConnector``: synthetic trades and top-10 depth snapshots, pushed.

The price is a one-cent random walk riding on a slow swing: a sine of STUB_SWING_BPS (default
40 bp) around the start price, one cycle every STUB_SWING_PERIOD_S (default 30 s) of trades. The
swing is what makes the demo show something: the default ``vwap`` strategy (10 bp from a 60 s
VWAP) signals within a few seconds of ``hftfeed up``; ``STUB_SWING_BPS=0`` leaves the plain walk.

A native connector: it wakes when the next event is due (STUB_TRADES_PER_S / STUB_DEPTH_PER_S per
symbol; 0 = as fast as the feed publishes). Paced, it hands each due event over on its own, stamped
when made, as a venue's messages arrive; unthrottled, every due event in one batch. The values
are deterministic for a given STUB_SEED (timestamps are the wall clock), whatever the timing: the
swing follows the trade count, not the clock.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.logging import get_logger
from services.common.settings import parse_symbols
from services.connector_feed.connector import ConnectorCounters, Delivered, FeedSink, NativeConnector
from services.connector_feed.events import Depth, Trade

TICK_CENTS = 1  # prices move in cents
DEPTH_LEVELS = 10
#: The shortest wait between batches: the loop's timer resolution (uvloop's is 1 ms). A shorter
#: sleep returns at once, so at 10k events/s the stub spun a core at 100 % (one event a turn),
#: competing with NATS and the subscribers for the CPU: p99 latency in ms (bench/latency.py).
MIN_SLEEP_S = 0.001
#: Random-walk steps in ticks, indexed by two random bits: down, flat, up, flat.
_STEPS = (-TICK_CENTS, 0, TICK_CENTS, 0)
#: Events handed over in one batch at most (unthrottled: the batch size of every step).
BATCH = 64
#: Trades per swing cycle when the stub is unthrottled (STUB_TRADES_PER_S=0).
UNTHROTTLED_SWING_TRADES = 600
EXCHANGE = "stub"
log = get_logger("connector_feed")


class StubSettings(BaseSettings):
    """The stub connector's own settings section."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT"], description="comma-separated instrument ids"
    )
    stub_trades_per_s: float = Field(
        default=20.0, ge=0, description="stub trade rate per symbol; 0 = unthrottled"
    )
    stub_depth_per_s: float = Field(
        default=5.0, ge=0, description="stub depth rate per symbol; 0 = unthrottled"
    )
    stub_seed: int | None = Field(default=None, description="same seed, same stream; unset = random")
    stub_start_price: str = Field(
        default="50000.00", pattern=r"^[0-9]+\.[0-9]{2}$", description="first stub price"
    )
    stub_swing_bps: float = Field(
        default=40.0,
        ge=0,
        le=5000,
        description="amplitude of the price's slow swing around the start price, in basis points "
        "(0 = a plain one-cent random walk); 40 makes the default vwap strategy signal within seconds",
    )
    stub_swing_period_s: float = Field(
        default=30.0,
        gt=0,
        description="one swing cycle takes this many seconds of trades at STUB_TRADES_PER_S "
        f"({UNTHROTTLED_SWING_TRADES} trades when unthrottled)",
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        return parse_symbols(value)


def swing_offsets(start_cents: int, swing_bps: float, trades: int) -> tuple[int, ...]:
    """The swing's offset in cents from the start price at each trade of one cycle."""
    if swing_bps == 0:
        return (0,)
    amplitude = start_cents * swing_bps / 10_000
    return tuple(round(amplitude * math.sin(2 * math.pi * i / trades)) for i in range(trades))


def swing_trades(settings: StubSettings) -> int:
    """Trades in one swing cycle: STUB_SWING_PERIOD_S at the configured trade rate."""
    if settings.stub_trades_per_s == 0:
        return UNTHROTTLED_SWING_TRADES
    return max(2, round(settings.stub_swing_period_s * settings.stub_trades_per_s))


class _Lane:
    """One symbol's generator state."""

    def __init__(self, symbol: str, start_cents: int, seed: int | None, swing: tuple[int, ...]) -> None:
        self.symbol = symbol
        # One generator per symbol and kind: the values do not depend on how they interleave.
        entropy = random.SystemRandom().random() if seed is None else seed
        self.trade_rng = random.Random(f"{entropy}:{symbol}:trades")
        self.depth_rng = random.Random(f"{entropy}:{symbol}:depth")
        self.walk = start_cents  # the random walk, before the swing
        self.cents = start_cents  # the last trade's price
        self.swing = swing
        self.trade_id = 0
        self.update_id = 0

    def trade(self, now_ns: int) -> Trade:
        bits = self.trade_rng.getrandbits(32)  # one draw: step, side and size
        self.walk = max(TICK_CENTS, self.walk + _STEPS[bits & 3])
        self.trade_id += 1
        self.cents = max(TICK_CENTS, self.walk + self.swing[self.trade_id % len(self.swing)])
        buyer_is_maker = bool(bits & 4)
        return Trade(
            EXCHANGE,
            self.symbol,
            self.trade_id,
            _cents_to_str(self.cents),
            f"0.{(bits >> 3) % 99_999 + 1:05d}",
            "sell" if buyer_is_maker else "buy",
            buyer_is_maker,
            now_ns,
            now_ns,
        )

    def depth(self, now_ns: int) -> Depth:
        # One draw for every level's size (9 bits each), prices from a cache: a synthetic source
        # should cost the pipeline's benchmarks as little as a venue's frame does.
        bits = self.depth_rng.getrandbits(9 * 2 * DEPTH_LEVELS)
        self.update_id += 1
        bids = [
            (price, _QTYS[(bits >> 9 * i) % len(_QTYS)])
            for i, price in enumerate(_prices(self.cents - TICK_CENTS, -TICK_CENTS))
        ]
        bits >>= 9 * DEPTH_LEVELS
        asks = [
            (price, _QTYS[(bits >> 9 * i) % len(_QTYS)])
            for i, price in enumerate(_prices(self.cents + TICK_CENTS, TICK_CENTS))
        ]
        return Depth(EXCHANGE, self.symbol, bids, asks, True, None, self.update_id, None, now_ns, now_ns)


#: Level sizes 0.01 .. 4.99 (as before: cents of 1 .. 499).
_QTYS = tuple(f"{n / 100:.2f}" for n in range(1, 500))
#: Price texts by cents: the swing and the walk revisit the same few tens of thousands of prices,
#: and a book's levels are consecutive ones (a cache of whole level lists thrashed: 26 % of the
#: mixed stub benchmark was formatting prices).
_PRICE_TEXT: dict[int, str] = {}
_PRICE_TEXT_MAX = 1 << 17


def _prices(best_cents: int, step: int) -> list[str]:
    """DEPTH_LEVELS prices from the best one outwards (above zero)."""
    texts, out = _PRICE_TEXT, []
    for cents in range(best_cents, best_cents + DEPTH_LEVELS * step, step):
        if cents <= 0:
            break
        text = texts.get(cents)
        if text is None:
            if len(texts) >= _PRICE_TEXT_MAX:  # a random walk wanders: keep the cache bounded
                texts.clear()
            text = texts[cents] = _cents_to_str(cents)
        out.append(text)
    return out


class StubbedConnector(NativeConnector):
    exchange = EXCHANGE

    def __init__(self, settings: StubSettings) -> None:
        self._trade_rate = settings.stub_trades_per_s
        self._depth_rate = settings.stub_depth_per_s
        start = int(settings.stub_start_price.replace(".", ""))
        swing = swing_offsets(start, settings.stub_swing_bps, swing_trades(settings))
        self._lanes = [_Lane(s, start, settings.stub_seed, swing) for s in settings.symbols]
        self._connected = False
        self.trades_sent = 0
        self.depth_sent = 0
        self.event_counter = 0
        self._trade_turn = True  # due_one: trades and depth in turn, as in due()

    def instruments(self) -> list[str]:
        return [lane.symbol for lane in self._lanes]

    def is_connected(self) -> bool:
        return self._connected

    async def close(self) -> None:
        self._connected = False

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "subscribed_trades": bool(self._lanes),
            "subscribed_depth": bool(self._lanes),
            "event_counter": self.event_counter,
        }

    def counters(self) -> ConnectorCounters:
        return ConnectorCounters(errors={"connection": 0})  # a generator has no connection to lose

    async def run(self, sink: FeedSink) -> None:
        self._connected = True
        log.info("connector_connected", connector="stub", symbols=self.instruments(), exchange=EXCHANGE)
        started = time.monotonic()
        paced = self._trade_rate > 0 and self._depth_rate > 0
        while True:
            elapsed = time.monotonic() - started
            if paced:  # a venue's pace: each event made, stamped and handed over on its own
                handed = 0
                while handed < BATCH and (event := self.due_one(elapsed)) is not None:
                    if not sink.put((event,)):  # published in this turn, unless NATS makes it wait
                        await sink.room()
                    handed += 1
            else:  # as fast as the feed publishes: whole batches
                batch = self.due(elapsed, time.time_ns())
                if batch:
                    await sink.deliver(batch)
                handed = len(batch)
            if not handed:
                await asyncio.sleep(max(self._next_due(elapsed) - elapsed, MIN_SLEEP_S))

    def due_one(self, elapsed: float) -> Delivered | None:
        """The next event due by ``elapsed`` seconds, stamped now (``ts_recv``, as a connector stamps
        a message when it reads it), or None. Paced stubs hand events over one at a time: at 10k
        events/s a wake-up finds ~15 due, and stamping them all before making the first made every
        event wait for the making and accepting of the others (``bench/latency.py``)."""
        lanes = len(self._lanes)
        trades_due = _count_due(self._trade_rate, elapsed, lanes) - self.trades_sent
        depth_due = _count_due(self._depth_rate, elapsed, lanes) - self.depth_sent
        event: Delivered
        if trades_due > 0 and (self._trade_turn or depth_due <= 0):
            self._trade_turn = False
            event = self._lanes[self.trades_sent % lanes].trade(time.time_ns())
            self.trades_sent += 1
        elif depth_due > 0:
            self._trade_turn = True
            event = self._lanes[self.depth_sent % lanes].depth(time.time_ns())
            self.depth_sent += 1
        else:
            return None
        self.event_counter += 1
        return event

    def due(self, elapsed: float, now_ns: int) -> list[Delivered]:
        """Every event due by ``elapsed`` seconds (at most BATCH), each kind in turn per symbol."""
        lanes = len(self._lanes)
        trades_due = _count_due(self._trade_rate, elapsed, lanes) - self.trades_sent
        depth_due = _count_due(self._depth_rate, elapsed, lanes) - self.depth_sent
        batch: list[Delivered] = []
        while (trades_due > 0 or depth_due > 0) and len(batch) < BATCH:
            if trades_due > 0:
                batch.append(self._lanes[self.trades_sent % lanes].trade(now_ns))
                self.trades_sent += 1
                trades_due -= 1
            if depth_due > 0:
                batch.append(self._lanes[self.depth_sent % lanes].depth(now_ns))
                self.depth_sent += 1
                depth_due -= 1
        self.event_counter += len(batch)
        return batch

    def _next_due(self, elapsed: float) -> float:
        lanes = len(self._lanes)
        times = [
            (sent // lanes + 1) / rate
            for sent, rate in ((self.trades_sent, self._trade_rate), (self.depth_sent, self._depth_rate))
            if rate > 0
        ]
        return min(times, default=elapsed + 3600.0)


def _count_due(rate: float, elapsed: float, lanes: int) -> int:
    """Events of one kind due by ``elapsed`` over all symbols (0 rate: unthrottled)."""
    if rate == 0:
        return 1 << 62
    return int(elapsed * rate) * lanes


def _cents_to_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
