"""``hftfeed record-npz``: md.<SYMBOL>.trades/depth -> hftbacktest files, until SIGINT/SIGTERM.

Subscribes to the trades and depth of every symbol in SYMBOLS on NATS_URL and writes
``NPZ_DIR/<exchange>/<SYMBOL>_<YYYYMMDD>.npz`` plus ``..._eod.npz`` (see
``services.connector_feed.hftbacktest.writer``). The NATS callbacks only hand the raw message to
the writer's bounded queue; decoding, books and disk are on the writer's thread. On a signal the
subscriptions are drained, then the writer assembles every open day before the process exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from nats.aio.msg import Msg
from pydantic import Field

from schemas import subjects
from services.common.bus import settled
from services.common.lifecycle import service_main, start_runtime
from services.common.logging import get_logger
from services.common.settings import CommonSettings
from services.connector_feed.hftbacktest.writer import NpzWriter

SERVICE = "record_npz"
log = get_logger(SERVICE)


class RecordNpzSettings(CommonSettings):
    npz_dir: Path = Field(default=Path("npz"), description="where <exchange>/<SYMBOL>_<YYYYMMDD>.npz go")
    npz_flush_s: float = Field(
        default=1.0, gt=0, le=3600, description="chunk interval: a crash loses at most this much"
    )
    npz_max_queue: int = Field(default=200_000, ge=1, description="messages buffered for the writer")


def _handler(writer: NpzWriter, is_trade: bool) -> Callable[[Msg], Awaitable[None]]:
    submit = writer.submit

    async def on_msg(msg: Msg) -> None:
        submit(is_trade, msg.data)

    return on_msg


async def run_record_npz(settings: RecordNpzSettings, stop: asyncio.Event) -> int:
    bus, telemetry = await start_runtime(SERVICE, settings)
    # Start-up recovery (chunks a crash left behind) reads and writes files: off the event loop.
    writer = await asyncio.to_thread(
        NpzWriter, settings.npz_dir, settings.npz_flush_s, settings.npz_max_queue
    )
    on_trade, on_depth = _handler(writer, True), _handler(writer, False)
    for symbol in settings.symbols:
        await bus.subscribe(subjects.trades(symbol), on_trade)
        await bus.subscribe(subjects.depth(symbol), on_depth)
    await settled(bus.nc)
    log.info("service_started", symbols=settings.symbols, npz_dir=str(settings.npz_dir))
    await stop.wait()
    await bus.drain()  # every message already received reaches the writer's queue
    await asyncio.to_thread(writer.close)
    telemetry.shutdown()
    stats = asdict(writer.stats)
    log.info("service_stopped", slow_consumer_drops=bus.stats.slow_consumer_drops, **stats)
    return 1 if writer.stats.errors else 0


def main() -> int:
    return service_main(SERVICE, RecordNpzSettings, run_record_npz)
