"""CONNECTOR_NAME=hftbacktest: settings, the factory, and a replay onto a real NATS server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest
from nats.aio.client import Client

from schemas import subjects
from services.common.lifecycle import FatalError
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.events import Event
from services.connector_feed.factory import build_connector
from services.connector_feed.hftbacktest.connector import HftbacktestReplayConnector, replay_files
from services.connector_feed.hftbacktest.decode import HbtConverter
from services.connector_feed.hftbacktest.format import (
    BUY_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EVENT_DTYPE,
    EXCH_EVENT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    HbtDataError,
)
from services.connector_feed.hftbacktest.settings import HbtReplaySettings
from services.connector_feed.settings import FeedSettings
from tests.helpers import collect, eventually, running_stream, without

EL = EXCH_EVENT | LOCAL_EVENT
T0 = 1_770_000_000_000_000_000
DOC = (Path(__file__).parent.parent / "docs" / "hftbacktest.md").read_text()


def day(*rows: tuple[int, int, float, float]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (ev, ts, px, qty) in enumerate(rows):
        out[i] = (ev, ts, ts + 1_000_000, px, qty, 0, 0, 0.0)
    return out


def write_days(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / "X_20260202.npz",
        data=day(
            (EL | DEPTH_EVENT | BUY_EVENT, T0, 100.0, 1.0), (EL | DEPTH_EVENT | SELL_EVENT, T0, 100.5, 2.0)
        ),
    )
    np.savez_compressed(
        folder / "X_20260203.npz",
        data=day((EL | TRADE_EVENT | SELL_EVENT, T0 + 50_000_000, 100.0, 0.5)),
    )
    snap = EL | DEPTH_SNAPSHOT_EVENT
    np.savez_compressed(folder / "X_20260202_eod.npz", data=day((snap | BUY_EVENT, 0, 1.0, 1.0)))  # skipped
    (folder / ".parts" / "X_20260204").mkdir(parents=True)
    np.save(folder / ".parts" / "X_20260204" / "00000001.npy", day())


def replay_settings(path: Path, **extra: object) -> HbtReplaySettings:
    values: dict[str, object] = {
        "replay_path": path,
        "hbt_tick_size": "0.5",
        "hbt_lot_size": "0.5",
        "symbols": "X-PERP",
        "hbt_exchange": "binance_usdm",
        "replay_speed": 0,
        **extra,
    }
    return HbtReplaySettings(**values)  # type: ignore[arg-type]


async def test_a_folder_replays_onto_the_bus_as_the_converter_decodes_it(
    nc: Client, nats_url: str, unique: str, tmp_path: Path
) -> None:
    write_days(tmp_path / "days")
    connector = HftbacktestReplayConnector(replay_settings(tmp_path / "days", symbols=unique))
    trades, depth = await collect(nc, subjects.trades(unique)), await collect(nc, subjects.depth(unique))

    async with running_stream(connector, nats_url, [unique], ReconnectPolicy()):
        await eventually(lambda: connector.finished and len(trades) == 1 and len(depth) == 1)

    converter = HbtConverter("binance_usdm", unique, Decimal("0.5"), Decimal("0.5"))
    expected = [
        without(e.wire(), "seq", "feed_run")
        for f in replay_files(tmp_path / "days")
        for b in converter.convert(np.load(f)["data"])
        for e in b
    ]
    assert [without(m.data, "seq", "feed_run") for m in depth + trades] == expected
    assert [orjson.loads(m.data)["seq"] for m in depth + trades] == [1, 1]  # each subject's first
    assert [p.name for p in connector.files] == ["X_20260202.npz", "X_20260203.npz"]
    assert connector.get_health_status()["replay"]["depth_messages"] == 1


async def test_replay_speed_one_keeps_the_recorded_pace(nats_url: str, unique: str, tmp_path: Path) -> None:
    write_days(tmp_path / "days")
    connector = HftbacktestReplayConnector(replay_settings(tmp_path / "days", symbols=unique, replay_speed=1))

    started = time.monotonic()
    async with running_stream(connector, nats_url, [unique], ReconnectPolicy()):
        await eventually(lambda: connector.finished)
    elapsed = time.monotonic() - started

    assert 0.05 <= elapsed < 2.0  # the trade is 50 ms after the depth


def test_hftbacktest_settings_are_required_and_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HBT_TICK_SIZE", "HBT_LOT_SIZE", "HBT_EXCHANGE", "HBT_INITIAL_SNAPSHOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("REPLAY_PATH", str(tmp_path))
    monkeypatch.setenv("SYMBOLS", "X")
    monkeypatch.setenv("HBT_LOT_SIZE", "0.001")

    with pytest.raises(FatalError, match="HBT_TICK_SIZE: Field required"):
        build_connector(FeedSettings(data_source="hft_connector", connector_name="hftbacktest"))
    monkeypatch.setenv("HBT_TICK_SIZE", "1e-1")
    with pytest.raises(FatalError, match="HBT_TICK_SIZE"):
        build_connector(FeedSettings(data_source="hft_connector", connector_name="hftbacktest"))
    monkeypatch.setenv("HBT_TICK_SIZE", "0.1")
    with pytest.raises(FatalError, match=r"no \.npz/\.npy event files"):
        build_connector(FeedSettings(data_source="hft_connector", connector_name="hftbacktest"))
    write_days(tmp_path)
    connector, label = build_connector(
        FeedSettings(data_source="hft_connector", connector_name="hftbacktest")
    )
    assert (label, connector.exchange) == ("hftbacktest", "hftbacktest")


def test_one_symbol_and_an_existing_snapshot_are_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one symbol"):
        replay_settings(tmp_path, symbols="A,B")
    write_days(tmp_path)
    with pytest.raises(HbtDataError, match="HBT_INITIAL_SNAPSHOT"):
        HftbacktestReplayConnector(replay_settings(tmp_path, hbt_initial_snapshot=tmp_path / "missing.npz"))


async def test_an_unreadable_file_is_reported_and_the_replay_goes_on(tmp_path: Path) -> None:
    write_days(tmp_path)
    (tmp_path / "X_20260202.npz").write_bytes(b"truncated")
    connector = HftbacktestReplayConnector(replay_settings(tmp_path))
    await connector.connect()

    events = [event async for event in _drain(connector)]

    assert len(events) == 1 and connector.finished
    assert [e["file"] for e in connector.errors] == [str(tmp_path / "X_20260202.npz")]


async def _drain(connector: HftbacktestReplayConnector) -> AsyncIterator[Event]:
    while True:
        event = await connector.next_event()
        if event is not None:
            yield event
        elif connector.finished:  # None once finished: nothing is pending any more
            return


@pytest.mark.parametrize("settings", [HbtReplaySettings])
def test_every_hftbacktest_setting_is_in_its_doc(settings: type[HbtReplaySettings]) -> None:
    from services.cli.record_npz import RecordNpzSettings

    names = [*settings.model_fields, *(n for n in RecordNpzSettings.model_fields if n.startswith("npz_"))]

    assert [n.upper() for n in names if f"`{n.upper()}`" not in DOC] == []
