"""``hftfeed record`` (offline recordings from the stub or cut from a recording), the example
recording, and ``hftfeed replay`` with its progress."""

from __future__ import annotations

import gzip
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import orjson
from nats.aio.client import Client

from schemas import DepthUpdate, TradeTick, subjects
from services.cli.record import record_slice, record_stub
from services.cli.replay import replay_state
from services.cli.stub_frames import stub_events
from services.common.book import OrderBook
from services.common.natsserver import NatsServer, free_port
from services.common.reconnect import ReconnectPolicy
from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings
from services.connector_feed.events import Depth, Trade
from services.connector_feed.stub import StubbedConnector, StubSettings
from tests.helpers import collect, eventually, running_stream

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "record-replay.md").read_text()
EXAMPLE = ROOT / "examples" / "recordings" / "binance"
START_NS = 1_767_614_400_000_000_000  # 2026-01-05T12:00:00Z
QUICK = ReconnectPolicy(initial_s=0.01, max_s=0.05, max_attempts=0)


def _documented(command: str) -> list[str]:
    """The one line of docs/record-replay.md's bash blocks that starts with ``command``."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    found = [line for line in lines if line.startswith(command)]
    assert len(found) == 1, found
    return shlex.split(found[0])


def _lines(folder: Path, pattern: str = "*.gz") -> list[str]:
    """The lines of the recordings in ``folder``, file after file."""
    return [
        line
        for path in sorted(folder.glob(pattern))
        for line in gzip.decompress(path.read_bytes()).decode().splitlines()
    ]


def _stub_events(settings: StubSettings, seconds: float) -> tuple[list[Trade], list[Depth]]:
    """The stub's trades and books as ``record --source stub`` saw them."""
    events = [event for _, event in stub_events(StubbedConnector(settings), START_NS, seconds)]
    return [e for e in events if isinstance(e, Trade)], [e for e in events if isinstance(e, Depth)]


def _decimal_levels(levels: Sequence[Sequence[str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels}


async def test_a_stub_recording_replays_as_the_stubs_trades_and_books(
    nats_url: str, nc: Client, unique: str, tmp_path: Path
) -> None:
    settings = StubSettings(symbols=unique, stub_seed=11)  # 20 trades and 5 books a second
    recorded = record_stub(tmp_path, settings, 4.0, START_NS)
    trades = await collect(nc, subjects.trades(unique))
    depth = await collect(nc, subjects.depth(unique))
    replay = ReplayConnector(ReplaySettings(replay_path=tmp_path / "binance", replay_speed=0))
    async with running_stream(replay, nats_url, [unique], QUICK):
        await eventually(lambda: replay.finished and len(trades) == 80)
        # The REST snapshot is not published itself: the book syncs on the first diff after it.
        await eventually(lambda: len(depth) == 19)
    book = OrderBook()
    for msg in depth:
        update = DepthUpdate.model_validate_json(msg.data)
        levels = [[(format(p, "f"), format(q, "f")) for p, q in side] for side in (update.bids, update.asks)]
        (book.reset if update.is_snapshot else book.apply)(levels[0], levels[1], update.last_update_id)
    made_trades, made_books = _stub_events(settings, 4.0)

    assert recorded.total == 100 and list(recorded.lines) == [tmp_path / "binance" / f"{unique}_20260105.gz"]
    published = [TradeTick.model_validate_json(m.data) for m in trades]
    assert [(t.trade_id, t.price, t.qty, t.side) for t in published] == [
        (t.trade_id, Decimal(t.price), Decimal(t.qty), t.side) for t in made_trades
    ]
    assert published[0].exchange == "binance" and published[0].ts_recv == START_NS + 50_000_000
    assert _decimal_levels(book.bids()) == _decimal_levels(made_books[-1].bids)
    assert _decimal_levels(book.asks()) == _decimal_levels(made_books[-1].asks)


def test_a_slice_keeps_the_first_seconds_of_a_recording_line_for_line(tmp_path: Path) -> None:
    record_stub(tmp_path / "long", StubSettings(symbols="AAA,BBB", stub_seed=2), 10.0, START_NS)
    source = tmp_path / "long" / "binance"

    sliced = record_slice(tmp_path / "short", source, 2.5, {"BBB"})

    end = min(_ns(line) for line in _lines(source)) + 2_500_000_000
    bbb = _lines(source, "BBB_*.gz")
    kept = _lines(tmp_path / "short" / "binance")
    assert kept == [line for line in bbb if _ns(line) < end]
    assert 0 < len(kept) < len(bbb) and sliced.total == len(kept) and sliced.file_errors == []
    assert [p.name for p in sliced.lines] == ["BBB_20260105.gz"]


def _ns(line: str) -> int:
    return int(line.split(" ", 1)[0])


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_example_recording_is_what_its_documented_command_makes(tmp_path: Path) -> None:
    command = _documented("hftfeed record examples/recordings")

    made = _cli(command[1:], tmp_path)  # the same relative path, under tmp_path

    assert made.returncode == 0, made.stderr
    assert _lines(tmp_path / "examples" / "recordings" / "binance") == _lines(EXAMPLE)
    assert sum(f.stat().st_size for f in EXAMPLE.glob("*.gz")) < 300_000  # small enough to ship


def test_record_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    no_source = _cli(["record", str(tmp_path), "--source", "replay"], tmp_path)
    missing = _cli(
        ["record", str(tmp_path), "--source", "replay", "--from", str(tmp_path / "nope")], tmp_path
    )
    unknown = _cli(["record", str(tmp_path), "--source", "binance"], tmp_path)

    assert (no_source.returncode, missing.returncode, unknown.returncode) == (1, 1, 2)
    assert "--source replay needs --from" in no_source.stderr
    assert f"{tmp_path / 'nope'}: no such file or folder" in missing.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_replay_writes_a_progress_line_every_replay_progress_s(tmp_path: Path) -> None:
    with NatsServer() as server:
        env = {
            **os.environ,
            "NATS_URL": server.url,
            "DATA_SOURCE": "hft_connector",
            "CONNECTOR_NAME": "replay",
            "REPLAY_PATH": str(EXAMPLE),
            "REPLAY_SPEED": "20",  # the example's 60 s in 3 s
            "REPLAY_PROGRESS_S": "0.5",
            "PYTHONPATH": str(ROOT),
        }
        feed = subprocess.Popen(
            [sys.executable, "-m", "services.connector_feed"], env=env, cwd=tmp_path, stdout=subprocess.PIPE
        )
        assert feed.stdout is not None
        events = []
        try:
            for raw in feed.stdout:
                events.append(orjson.loads(raw))
                if events[-1]["event"] in ("replay_finished", "service_failed"):
                    break
        finally:
            feed.terminate()
            feed.wait(timeout=15)

    progress = [e for e in events if e["event"] == "replay_progress"]
    finished = events[-1]
    assert finished["event"] == "replay_finished"
    assert (finished["lines"], finished["percent"], finished["file_errors"]) == (1500, 100.0, 0)
    assert len(progress) >= 4  # ~3 s at one line every 0.5 s
    assert [p["lines"] for p in progress] == sorted({p["lines"] for p in progress})  # moving on
    assert all(0 < p["percent"] <= 100 and p["position"].startswith("2026-01-05T12:") for p in progress)
    assert progress[-1]["percent"] > progress[0]["percent"]


def test_the_documented_replay_command_replays_the_example_through_the_stack(tmp_path: Path) -> None:
    command = _documented("hftfeed replay")
    url = f"nats://127.0.0.1:{free_port()}"  # `hftfeed up` starts its own nats-server there

    run = _cli(
        [*command[1:], "--speed", "0", "--exit-when-done", "--log-dir", str(tmp_path / "logs")],
        ROOT,
        {"NATS_URL": url},
    )

    trade_frames = sum('"e":"trade"' in line for line in _lines(EXAMPLE))
    assert run.returncode == 0, run.stdout + run.stderr
    finished = [line for line in run.stdout.splitlines() if line.startswith("replay finished:")]
    assert len(finished) == 1, run.stdout
    assert "100.0%" in finished[0] and "lines=1500" in finished[0] and f"trade={trade_frames}" in finished[0]
    assert "stopped" in run.stdout  # the stack was stopped


def test_replay_progress_is_read_from_the_feeds_health() -> None:
    health = {
        "published": {"trade": 62, "depth": 14},
        "connector": {
            "connector_health": {
                "replay": {
                    "lines": 77,
                    "percent": 14.7,
                    "position": "2026-01-05T12:00:03.100000+00:00",
                    "lines_per_s": 251,
                    "finished": False,
                    "errors": [],
                }
            }
        },
    }

    state = replay_state(health)

    assert state is not None and (state.percent, state.lines, state.finished) == (14.7, 77, False)
    assert state.text() == (
        " 14.7%  lines=77  at 2026-01-05T12:00:03.100000+00:00  251 lines/s  published depth=14 trade=62"
    )
    assert replay_state({"service": "connector_feed", "status": "no reply"}) is None


def test_replay_refuses_a_missing_or_misplaced_recording_before_starting_anything(tmp_path: Path) -> None:
    misplaced = tmp_path / "BTCUSDT_20260105.gz"  # not in an exchange folder
    misplaced.write_bytes(gzip.compress(b""))
    env = {"NATS_URL": f"nats://127.0.0.1:{free_port()}"}

    missing = _cli(["replay", str(tmp_path / "nope.gz")], tmp_path, env)
    elsewhere = _cli(["replay", str(misplaced)], tmp_path, env)

    assert (missing.returncode, missing.stdout) == (2, "")
    assert f"REPLAY_PATH={tmp_path / 'nope.gz'}: no such file or folder" in missing.stderr
    assert elsewhere.returncode == 2 and "recordings must sit in one exchange folder" in elsewhere.stderr
    assert not (tmp_path / ".hftfeed").exists()  # no stack was started
