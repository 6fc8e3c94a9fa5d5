"""``hftfeed top``: the screen drawn from recorded snapshots (pure), and the command against a real stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.cli.top_model import counter_rates, errors_by_reason, percentiles
from services.cli.top_view import aligned, render_text
from services.common.natsserver import free_port
from tests.test_telemetry import _env, services

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data" / "top"
HFTFEED = [sys.executable, "-m", "services.cli"]


def _snapshot(name: str) -> dict[str, Any]:
    """A snapshot recorded with ``hftfeed top --once --json`` (stub_stack: `hftfeed up` with a few
    bad messages published on md.BTCUSDT.trades; replay_stack: `hftfeed replay` of the example)."""
    snapshot: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return snapshot


def _row(text: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


# --- the screen, from recorded snapshots -----------------------------------------------------------


def test_the_screen_shows_services_rates_queues_and_reasons() -> None:
    text = render_text(_snapshot("stub_stack"))

    assert _row(text, "connector_feed")[:7] == [
        "connector_feed",
        "ok",
        "22s",
        "25.0",
        "25.0",
        "0",
        "connected",
    ]
    assert _row(text, "strategy_engine")[:6] == ["strategy_engine", "ok", "22s", "25.0", "0.2", "0"]
    assert _row(text, "context")[:6] == ["context", "ok", "22s", "25.0", "0.0", "-"]


def test_the_screen_shows_each_instrument_its_book_lag_and_a_ladder() -> None:
    snapshot = _snapshot("stub_stack")
    lag = snapshot["instruments"]["BTCUSDT"]["lag_ms"]["bus"]

    text = render_text(snapshot)

    row = _row(text, "BTCUSDT")
    assert row[2:8] == ["synced 20 lv", "synced", "49801.72", "49802.01", "49802.03", "0.02"]
    assert row[8:10] == ["20.0", "5.0"] and row[11] == f"{lag['p50']:.2f} / {lag['p99']:.2f}"
    ladder = [_row(text, size) for size in ("4.40", "0.02", "2.81", "3.64", "4.21")]
    assert [r[1] for r in ladder] == ["49802.01", "49802.00", "49801.99", "49801.98", "49801.97"]
    assert [r[2] for r in ladder] == ["49802.03", "49802.04", "49802.05", "49802.06", "49802.07"]


def test_the_screen_shows_the_latest_signals_and_errors_by_reason() -> None:
    text = render_text(_snapshot("stub_stack"))

    first = _row(text, "21:52:01.113")
    assert first[1:5] == ["vwap", "BTCUSDT", "BUY", "1.0050"] and first[5].startswith(
        "price 50094.41 is -10.05"
    )
    assert _row(text, "21:51:58.562")[1:5] == ["vwap", "BTCUSDT", "FLAT", "0.4835"]
    errors = [line for line in text.splitlines() if "rejected" in line]  # beside the signals
    assert [[c.strip() for c in line.strip("│ ").split("│")][-4:] for line in errors] == [
        ["context", "rejected", "not_json", "3"],
        ["strategy_engine", "rejected", "not_json", "3"],
        ["context", "rejected", "symbol_mismatch", "1"],
        ["strategy_engine", "rejected", "symbol_mismatch", "1"],
    ]


def test_a_replay_shows_its_progress_bar_and_the_venue_book_state() -> None:
    text = render_text(_snapshot("replay_stack"))

    bar = next(line for line in text.splitlines() if line.startswith("replay "))
    assert "36.0%  lines 390  at 2026-01-05T12:00:15.600000+00:00" in bar
    assert bar.count("━") == 14  # 36 % of 40 columns
    assert _row(text, "BTCUSDT")[1] == "synced"  # the feed's own book of the venue
    assert _row(text, "BTCUSDT")[11] == "330d / 330d"  # recorded receipt times are long past


def test_a_service_that_does_not_answer_is_shown_as_such() -> None:
    snapshot = _snapshot("stub_stack")
    snapshot["health"]["context"] = {"service": "context", "status": "no reply", "reasons": ["TimeoutError"]}
    snapshot["rates"]["context"] = {"in": None, "out": None}

    row = _row(render_text(snapshot), "context")

    assert row[:6] == ["context", "no reply", "-", "-", "-", "-"] and row[7] == "TimeoutError"


# --- the model ---------------------------------------------------------------------------------------


def test_rates_are_counter_deltas_over_the_interval_and_unknown_after_a_restart() -> None:
    before = {
        "connector_feed": {
            "uptime_s": 10.0,
            "published": {"trade": 100, "depth": 20},
            "connector": {"connector_health": {"event_counter": 120}},
        },
        "strategy_engine": {
            "uptime_s": 10.0,
            "consumed": {"trade": 100},
            "strategies": {"a": {"signals": 2}},
        },
        "context": {"uptime_s": 10.0, "consumed": {"trade": 100}, "queries": 1},
    }
    after = {
        "connector_feed": {
            "uptime_s": 12.0,
            "published": {"trade": 140, "depth": 30},
            "connector": {"connector_health": {"event_counter": 170}},
        },
        "strategy_engine": {
            "uptime_s": 12.0,
            "consumed": {"trade": 140},
            "strategies": {"a": {"signals": 3}},
        },
        "context": {"uptime_s": 1.0, "consumed": {"trade": 5}, "queries": 0},  # restarted meanwhile
    }

    rates = counter_rates(before, after, 2.0)

    assert rates == {
        "connector_feed": {"in": 25.0, "out": 25.0},
        "strategy_engine": {"in": 20.0, "out": 0.5},
        "context": {"in": None, "out": None},
    }
    assert counter_rates(None, after, 2.0)["connector_feed"] == {"in": None, "out": None}


def test_errors_are_gathered_by_reason_from_every_section_biggest_first() -> None:
    health = {
        "connector_feed": {
            "dropped": {"by_reason": {"queue_full": 7}},
            "rejected": {"nan_price": 2, "bad_side": 0},
            "connector": {"reconnection_attempts": 1, "connector_health": {"malformed": {"not_json": 4}}},
            "nats": {"errors": 0},
        },
        "strategy_engine": {
            "slow_consumer_drops": 9,
            "strategies": {"vwap": {"failures": {"raised": 3}, "dropped": 0, "blocked": 1}},
        },
        "context": {"symbols": {"BTCUSDT": {"book_gaps": 2}}, "permission_violations": 5},
    }

    assert errors_by_reason(health) == [
        ("strategy_engine", "slow consumer", "", 9),
        ("connector_feed", "dropped", "queue_full", 7),
        ("context", "permission violation", "", 5),
        ("connector_feed", "malformed frame", "not_json", 4),
        ("strategy_engine", "strategy vwap", "raised", 3),
        ("connector_feed", "rejected", "nan_price", 2),
        ("context", "book gaps", "BTCUSDT", 2),
        ("connector_feed", "reconnect attempts", "", 1),
        ("strategy_engine", "strategy vwap", "blocked the loop", 1),
    ]


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]

    assert percentiles(samples) == {"p50": 50.0, "p99": 99.0, "max": 100.0, "n": 100}
    assert percentiles([3.0]) == {"p50": 3.0, "p99": 3.0, "max": 3.0, "n": 1}
    assert percentiles([]) is None


def test_a_column_of_decimals_is_aligned_without_changing_a_value() -> None:
    assert aligned(["49975.04000000", "49975.10000000", "49975.00000000"]) == [
        "49975.04",
        "49975.10",
        "49975.00",
    ]
    assert aligned(["0.00000001", "1.5"]) == ["0.00000001", "1.50000000"]
    assert aligned(["100", None, "x.y"]) == ["100", "-", "x.y"]


# --- the command against a real stack -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(nats_url: str) -> Iterator[tuple[dict[str, str], str]]:
    symbol = "TOP" + uuid.uuid4().hex[:8].upper()
    env = _env(nats_url, symbol, VWAP_THRESHOLD_BPS="10", STUB_SWING_BPS="40")  # the default demo's signals
    with services(env):
        deadline = time.monotonic() + 20
        while _run(["health", "--timeout", "1"], env).returncode != 0:
            assert time.monotonic() < deadline, "the services never became healthy"
        yield env, symbol


def _run(args: list[str], env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HFTFEED, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_top_once_prints_the_live_stack_as_text(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    run = _run(["top", "--once", "--interval", "1.5"], env)

    assert (run.returncode, run.stderr) == (0, "")
    assert [_row(run.stdout, s)[1] for s in ("connector_feed", "strategy_engine", "context")] == ["ok"] * 3
    row = _row(run.stdout, symbol)
    assert row[2] == "synced 20 lv" and row[3] == "synced"
    assert float(row[8]) > 50 and float(row[9]) > 5  # 100 trades and 10 books a second
    assert max(len(line) for line in run.stdout.splitlines()) > 80  # never cut at 80 columns


def _top(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``hftfeed top ARGS`` with its output on pipes."""
    return subprocess.Popen(
        [*HFTFEED, "top", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_top_json_gives_each_refresh_as_data(stack: tuple[dict[str, str], str], nc: Client) -> None:
    env, symbol = stack
    top = _top(env, "--json", "--iterations", "2", "--interval", "1")
    assert top.stdout is not None
    first = await asyncio.to_thread(top.stdout.readline)  # top is subscribed: it has refreshed once
    signal_ = {"strategy": "manual", "symbol": symbol, "side": "buy", "strength": "1", "reason": "t", "ts": 1}
    await nc.publish(f"signals.manual.{symbol}", json.dumps(signal_).encode())
    out, _ = await asyncio.to_thread(top.communicate, timeout=30)

    refreshes = [json.loads(line) for line in [first, *out.splitlines()]]
    assert top.returncode == 0 and len(refreshes) == 2
    last = refreshes[-1]
    book = last["instruments"][symbol]["book"]
    assert book["state"] == "synced" and len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] < book["asks"][0][0] and book["seq"] > 0
    assert last["rates"]["connector_feed"]["out"] > 50
    assert last["instruments"][symbol]["lag_ms"]["bus"]["n"] > 50
    assert {"subject": f"signals.manual.{symbol}", **signal_} in last["signals"]


def test_top_ends_quietly_when_its_reader_goes_away_or_on_sigint(stack: tuple[dict[str, str], str]) -> None:
    env, _ = stack
    piped = _top(env, "--interval", "0.3")
    head = subprocess.run(["head", "-1"], stdin=piped.stdout, capture_output=True, timeout=20, check=False)
    assert piped.stdout is not None and piped.stderr is not None
    piped.stdout.close()
    interrupted = _top(env, "--interval", "0.3")
    assert interrupted.stdout is not None
    interrupted.stdout.readline()  # it is running: its first refresh is out
    interrupted.send_signal(signal.SIGINT)
    _, interrupted_err = interrupted.communicate(timeout=15)

    assert piped.wait(timeout=15) == 0 and piped.stderr.read() == b""
    assert head.stdout.startswith(b"hftfeed top")
    assert (interrupted.returncode, interrupted_err) == (0, b"")


def test_top_without_a_server_says_how_to_start_one() -> None:
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{free_port()}", "PYTHONPATH": str(ROOT)}

    run = _run(["top", "--once"], env)

    assert run.returncode == 1 and run.stdout == ""
    assert "cannot connect to NATS" in run.stderr and "hftfeed up" in run.stderr
