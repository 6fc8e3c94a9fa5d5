"""Record raw Binance frames from the fake venue, replay them, and compare what was published."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from schemas import DepthUpdate, TradeTick, subjects
from services.common.bus import settled
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.connector import BinanceConnector
from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.recorder import Recorder
from tests.fake_binance import FakeBinance, book_scenario, spot_trade
from tests.helpers import collect, eventually, running_stream, without

ROOT = Path(__file__).parent.parent
TS = 1_770_000_000_000
QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)


async def test_a_replay_publishes_exactly_what_the_live_feed_published(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    snapshot, diffs, expected = book_scenario(unique, "spot", 120, seed=21, levels=100)
    assert expected is not None
    settings = BinanceSettings(symbols=unique, record_dir=tmp_path)
    live_trades = await collect(nc, subjects.trades(unique))
    live_depth = await collect(nc, subjects.depth(unique))
    async with FakeBinance("spot") as venue:
        venue.load_snapshot(snapshot)
        settings = settings.model_copy(
            update={"binance_ws_url": venue.ws_url, "binance_rest_url": venue.rest_url}
        )
        async with running_stream(BinanceConnector(settings, QUICK), nats_url, [unique], QUICK):
            streams = [f"{unique.lower()}@depth@100ms", f"{unique.lower()}@trade"]
            await venue.wait_for_subscribers(streams)
            for i, diff in enumerate(diffs):
                await venue.send(streams[0], diff)
                await venue.send(
                    streams[1],
                    spot_trade(unique, i + 1, f"5000{i % 10}.10000000", "0.00000100", i % 2 == 0, TS + i),
                )
            await eventually(lambda: len(live_trades) == len(diffs))
            await eventually(
                lambda: (
                    bool(live_depth)
                    and DepthUpdate.model_validate_json(live_depth[-1].data).last_update_id
                    == expected.last_update_id
                )
            )
    recordings = sorted((tmp_path / "binance").iterdir())
    replay_settings = ReplaySettings(replay_path=tmp_path / "binance", replay_speed=0)
    await settled(nc)
    live_trade_bytes, live_depth_bytes = [m.data for m in live_trades], [m.data for m in live_depth]
    live_trades.clear()
    live_depth.clear()
    replay = ReplayConnector(replay_settings)
    async with running_stream(replay, nats_url, [unique], QUICK):
        await eventually(lambda: replay.finished and len(live_trades) == len(live_trade_bytes))
        await eventually(lambda: len(live_depth) == len(live_depth_bytes))

    assert [p.name.split("_")[0] for p in recordings] == [unique]
    # Same ids, decimals, ts_event, ts_recv and seq; only the run id differs (a new feed process).
    assert [without(m.data, "feed_run") for m in live_trades] == [
        without(b, "feed_run") for b in live_trade_bytes
    ]
    assert [without(m.data, "feed_run") for m in live_depth] == [
        without(b, "feed_run") for b in live_depth_bytes
    ]
    assert (
        TradeTick.model_validate_json(live_trade_bytes[0]).price
        == TradeTick.model_validate_json(live_trades[0].data).price
    )
    assert replay.health()["replay"]["errors"] == []


async def test_a_corrupt_or_truncated_file_is_reported_and_the_replay_goes_on(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    folder = tmp_path / "binance"
    folder.mkdir()
    good = (
        "\n".join(
            f"{(TS + i) * 1_000_000} "
            + f'{{"stream":"{unique.lower()}@trade","data":{{"e":"trade","E":{TS + i},"s":"{unique}","t":{i},'
            + f'"p":"1.0","q":"2.0","T":{TS + i},"m":false,"M":true}}}}'
            for i in range(1, 51)
        )
        + "\n"
    )
    (folder / f"{unique}_20260101.gz").write_bytes(gzip.compress(good.encode()))
    truncated = gzip.compress(good.replace(unique, unique + "T").encode())
    (folder / f"{unique}T_20260101.gz").write_bytes(truncated[: len(truncated) // 2])
    (folder / f"{unique}Z_20260101.gz").write_bytes(b"this is not gzip at all")
    trades = await collect(nc, subjects.trades(unique))
    replay = ReplayConnector(ReplaySettings(replay_path=folder, replay_speed=0))
    async with running_stream(replay, nats_url, [unique], QUICK):
        await eventually(lambda: replay.finished and len(trades) == 50)
        errors = replay.health()["replay"]["errors"]

    assert [TradeTick.model_validate_json(m.data).trade_id for m in trades] == list(range(1, 51))
    assert sorted(Path(e["file"]).name for e in errors) == sorted(
        [f"{unique}T_20260101.gz", f"{unique}Z_20260101.gz"]
    )
    assert all("after_line" in e and e["error"] for e in errors)


def test_recording_layout_and_rotation_at_midnight_utc(tmp_path: Path) -> None:
    before = 1_767_225_599_999_000_000  # 2025-12-31T23:59:59.999Z
    after = 1_767_225_600_001_000_000  # 2026-01-01T00:00:00.001Z
    recorder = Recorder(tmp_path, "binance_usdm")
    recorder.write("BTCUSDT", before, '{"e":"aggTrade"}')
    recorder.write("BTCUSDT", after, '{"lastUpdateId":1,"bids":[],"asks":[]}')
    recorder.close()

    first = gzip.decompress((tmp_path / "binance_usdm" / "BTCUSDT_20251231.gz").read_bytes()).decode()
    second = gzip.decompress((tmp_path / "binance_usdm" / "BTCUSDT_20260101.gz").read_bytes()).decode()
    assert first == f'{before} {{"e":"aggTrade"}}\n'
    assert second == f'{after} {{"lastUpdateId":1,"bids":[],"asks":[]}}\n'


async def test_sigterm_leaves_complete_recordings(nats_url: str, unique: str, tmp_path: Path) -> None:
    async with FakeBinance("spot") as venue:
        env = {
            **os.environ,
            "NATS_URL": nats_url,
            "DATA_SOURCE": "binance_ws",
            "SYMBOLS": unique,
            "BINANCE_WS_URL": venue.ws_url,
            "BINANCE_REST_URL": venue.rest_url,
            "RECORD_DIR": str(tmp_path),
            "BINANCE_DEPTH_STREAM": "partial5",
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
        }
        feed = subprocess.Popen([sys.executable, "-m", "services.connector_feed"], env=env, cwd=ROOT)  # noqa: ASYNC220
        try:
            name = f"{unique.lower()}@trade"
            await venue.wait_for_subscribers([name], timeout=20)
            for i in range(1, 2001):
                await venue.send(name, spot_trade(unique, i, "1.00000000", "1.00000000", False, TS + i))
            await asyncio.sleep(0.5)
            feed.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(feed.wait, 15) == 0
        finally:
            if feed.poll() is None:
                feed.kill()

    files = list((tmp_path / "binance").glob(f"{unique}_*.gz"))
    lines = gzip.decompress(files[0].read_bytes()).decode().splitlines()  # raises if the file were cut short
    assert len(files) == 1 and len(lines) == 2000
    assert all(line.split(" ", 1)[0].isdigit() and len(line.split(" ", 1)[0]) == 19 for line in lines)


async def test_replay_keeps_the_recorded_pace(nats_url: str, nc: Client, unique: str, tmp_path: Path) -> None:
    folder = tmp_path / "binance"
    folder.mkdir()
    start_ns = 1_770_000_000_000_000_000
    lines = [
        f"{start_ns + i * 300_000_000} "  # 0, 0.3 s, 0.6 s
        + f'{{"stream":"{unique.lower()}@trade","data":{{"e":"trade","E":1,"s":"{unique}","t":{i + 1},'
        + '"p":"1.0","q":"2.0","T":1,"m":false,"M":true}}'
        for i in range(3)
    ]
    (folder / f"{unique}_20260101.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    trades = await collect(nc, subjects.trades(unique))
    replay = ReplayConnector(ReplaySettings(replay_path=folder, replay_speed=1))
    arrivals: list[float] = []
    async with running_stream(replay, nats_url, [unique], QUICK):
        while len(arrivals) < 3:
            await eventually(lambda: len(trades) > len(arrivals), timeout_s=3)
            arrivals.append(asyncio.get_running_loop().time())

    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.2 <= gap <= 0.5 for gap in gaps), gaps  # 0.3 s apart, as recorded
    assert [TradeTick.model_validate_json(m.data).ts_recv for m in trades] == [
        start_ns,
        start_ns + 300_000_000,
        start_ns + 600_000_000,
    ]


async def test_one_file_flat_out_reports_a_truncation_or_a_bad_line_after_the_lines_before_it(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    """REPLAY_SPEED=0 over one file takes its own loop (no merge): the same refusals, the same
    report, every line before the fault published."""
    lines = [
        f"{(TS + i) * 1_000_000} "
        + f'{{"stream":"{unique.lower()}@trade","data":{{"e":"trade","E":{TS + i},"s":"{unique}","t":{i},'
        + f'"p":"1.0","q":"2.0","T":{TS + i},"m":false,"M":true}}}}'
        for i in range(1, 2001)
    ]
    bad_line = [*lines[:1500], "not a stamped line", *lines[1500:]]
    for case, body in (("bad_line", bad_line), ("truncated", lines)):
        folder = tmp_path / case / "binance"
        folder.mkdir(parents=True)
        data = gzip.compress(("\n".join(body) + "\n").encode())
        if case == "truncated":
            data = data[: len(data) * 3 // 4]
        (folder / f"{unique}_20260101.gz").write_bytes(data)
        trades = await collect(nc, subjects.trades(unique))
        replay = ReplayConnector(ReplaySettings(replay_path=folder, replay_speed=0))
        async with running_stream(replay, nats_url, [unique], QUICK):
            await eventually(lambda r=replay: r.finished)  # type: ignore[misc]
            await asyncio.sleep(0.2)
            [error] = replay.health()["replay"]["errors"]
        ids = [TradeTick.model_validate_json(m.data).trade_id for m in trades]

        if case == "bad_line":
            assert error["after_line"] == 1500 and "line 1501" in error["error"]
            assert ids == list(range(1, 1501))
        else:
            assert error["after_line"] == len(ids) > 0 and "EOFError" in error["error"]
            assert ids == list(range(1, len(ids) + 1))
