"""``hftfeed record-npz`` on a real NATS server: published contracts, the stub feed, SIGTERM, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nats.aio.client import Client

from schemas import subjects
from services.cli.record_npz import RecordNpzSettings, run_record_npz
from services.common.bus import settled
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
)
from services.connector_feed.hftbacktest.writer import NpzWriter
from services.connector_feed.stub import StubbedConnector, StubSettings
from tests.helpers import collect, eventually, running_stream
from tests.npz_helpers import T0, as_tuples, day_file, depth, eod_file, trade

EL = EXCH_EVENT | LOCAL_EVENT
ROOT = Path(__file__).parent.parent


async def test_record_npz_writes_what_was_published_on_the_bus(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    settings = RecordNpzSettings(nats_url=nats_url, symbols=[unique], npz_dir=tmp_path, npz_flush_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(run_record_npz(settings, stop))
    published = [depth(unique, 1, [("99", "1")], [("101", "2")], T0 + 1, snapshot=True)]
    published += [
        trade(unique, i, "100", "0.5", "buy" if i % 2 else "sell", T0 + 10 + i) for i in range(1, 51)
    ]
    await asyncio.sleep(0.5)  # the recorder subscribes; a NATS subject has no history

    await nc.publish(subjects.depth(unique), published[0])
    for payload in published[1:]:
        await nc.publish(subjects.trades(unique), payload)
    await settled(nc)
    await eventually(lambda: any(tmp_path.glob(f"stub/.parts/{unique}_*/*.npy")))
    stop.set()

    assert await asyncio.wait_for(task, 30) == 0
    rows = day_file(tmp_path, unique)
    trades = rows[(rows["ev"] & 0xFF) == TRADE_EVENT]
    assert trades["ival"].tolist() == list(range(1, 51))
    assert ((trades["ev"] & BUY_EVENT) != 0).tolist() == [i % 2 == 1 for i in range(1, 51)]
    assert (trades["local_ts"] - trades["exch_ts"]).tolist() == [1000] * 50
    assert as_tuples(eod_file(tmp_path, unique)) == [
        (EL | DEPTH_SNAPSHOT_EVENT | BUY_EVENT, 0, 0, 99.0, 1.0, 0),
        (EL | DEPTH_SNAPSHOT_EVENT | SELL_EVENT, 0, 0, 101.0, 2.0, 0),
    ]


async def test_the_stub_feed_records_into_hftbacktest_files(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    settings = RecordNpzSettings(nats_url=nats_url, symbols=[unique], npz_dir=tmp_path, npz_flush_s=0.05)
    trades_seen = await collect(nc, subjects.trades(unique))
    depth_seen = await collect(nc, subjects.depth(unique))
    stop = asyncio.Event()
    task = asyncio.create_task(run_record_npz(settings, stop))
    await asyncio.sleep(0.5)
    stub = StubbedConnector(
        StubSettings(symbols=unique, stub_trades_per_s=200, stub_depth_per_s=50, stub_seed=1)
    )

    async with running_stream(stub, nats_url, [unique], ReconnectPolicy()):
        await eventually(lambda: len(trades_seen) >= 60 and len(depth_seen) >= 10)
    await settled(nc)
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0

    day = next((tmp_path / "stub").glob(f"{unique}_*[0-9].npz")).stem.rsplit("_", 1)[1]
    rows = day_file(tmp_path, unique, day)
    local = rows[(rows["ev"] & LOCAL_EVENT) != 0]
    kinds = local["ev"] & 0xFF
    assert (kinds == TRADE_EVENT).sum() == len(trades_seen)
    assert (kinds == DEPTH_CLEAR_EVENT).sum() == 2 * len(depth_seen)  # every stub message is a snapshot
    validate_order(rows)


def _recorder(nats_url: str, symbol: str, folder: Path, flush_s: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "SYMBOLS": symbol,
        "NPZ_DIR": str(folder),
        "NPZ_FLUSH_S": flush_s,
        "LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "record-npz"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def leftover_chunks(folder: Path) -> list[Path]:
    return list(folder.glob("stub/.parts/*"))


async def _started(process: subprocess.Popen[bytes]) -> None:
    """Wait for the recorder's ``service_started`` line: it logs it once subscribed and flushed."""
    assert process.stdout is not None
    stdout = process.stdout

    def read_until_started() -> bytes:
        seen = b""
        for line in iter(stdout.readline, b""):
            seen += line
            if b"service_started" in line:
                return seen
        return seen

    seen = await asyncio.wait_for(asyncio.to_thread(read_until_started), 60)
    assert b"service_started" in seen, seen
    # Keep draining its output so the pipe never fills and blocks it.
    asyncio.get_running_loop().run_in_executor(None, stdout.read)


async def test_sigterm_mid_stream_leaves_complete_files(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    process = _recorder(nats_url, unique, tmp_path, "0.1")
    await _started(process)
    sent = 0

    async def publish_until(condition: object) -> None:
        nonlocal sent
        while not condition():  # type: ignore[operator]
            sent += 1
            await nc.publish(subjects.trades(unique), trade(unique, sent, "1.5", "2", "buy", T0 + sent))
            if sent % 50 == 0:
                await settled(nc)
                await asyncio.sleep(0.01)

    await publish_until(lambda: sent >= 300)
    process.send_signal(signal.SIGTERM)
    await publish_until(lambda: process.poll() is not None or sent >= 100_000)
    code = await asyncio.to_thread(process.wait, 30)

    assert code == 0
    ids = day_file(tmp_path, unique)["ival"].tolist()
    assert len(ids) >= 300 and ids == list(range(1, len(ids) + 1))  # no hole, no duplicate
    assert len(eod_file(tmp_path, unique)) == 0
    assert not leftover_chunks(tmp_path)


async def test_a_killed_recorder_loses_at_most_the_last_flush(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    process = _recorder(nats_url, unique, tmp_path, "0.1")
    await _started(process)
    for i in range(1, 201):
        await nc.publish(subjects.trades(unique), trade(unique, i, "3", "1", "sell", T0 + i))
    await settled(nc)

    def chunked() -> int:
        return sum(len(np.load(p)) for p in tmp_path.glob(f"stub/.parts/{unique}_*/*.npy"))

    await eventually(lambda: chunked() == 200)
    process.kill()
    await asyncio.to_thread(process.wait, 10)
    NpzWriter(tmp_path).close()  # the next start

    assert day_file(tmp_path, unique)["ival"].tolist() == list(range(1, 201))


@pytest.mark.parametrize("variable", ["NPZ_FLUSH_S", "NPZ_MAX_QUEUE"])
def test_bad_record_npz_settings_stop_at_start_naming_the_variable(variable: str) -> None:
    env = {**os.environ, variable: "-1", "NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "record-npz"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert variable.encode() in done.stderr


def validate_order(rows: np.ndarray) -> None:
    """hftbacktest's ``validate_event_order``: each clock in order on its own rows."""
    exch = rows[(rows["ev"] & EXCH_EVENT) != 0]["exch_ts"]
    local = rows[(rows["ev"] & LOCAL_EVENT) != 0]["local_ts"]
    assert (np.diff(exch) >= 0).all() and (np.diff(local) >= 0).all()
