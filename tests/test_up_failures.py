"""`hftfeed up` is honest: as a real process, it exits non-zero with the failing service's own error
line when a service cannot start or dies later, keeps each run's logs apart, and says in its
banner what is not healthy and why, in full width."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.natsserver import free_port, is_listening

ROOT = Path(__file__).parent.parent


def _env(port: int, **extra: str) -> dict[str, str]:
    prefixes = ("DATA_SOURCE", "CONNECTOR_", "STUB_", "SYMBOLS", "NATS_URL", "STRATEGIES", "REPLAY_", "HTTP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith((*prefixes, "BINANCE_"))}
    env.update(
        {
            "NATS_URL": f"nats://127.0.0.1:{port}",
            "STUB_TRADES_PER_S": "50",
            "STUB_DEPTH_PER_S": "10",
            "HTTP_PORT": str(free_port()),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "80",  # a narrow terminal's width: nothing may be cut at it
            **extra,
        }
    )
    return env


def _up(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--log-dir", str(tmp_path / "logs"), *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(up: subprocess.Popen[str], marker: str, timeout_s: float = 60) -> str:
    """The output up to the first line containing ``marker`` (the process keeps running)."""
    assert up.stdout is not None
    deadline = time.monotonic() + timeout_s
    lines = []
    for line in up.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    return "".join(lines)


def _pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"● (\w+)\s+started\s+pid (\d+)", output)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("extra", "service", "said"),
    [
        pytest.param(
            {"DATA_SOURCE": "hft_connector", "CONNECTOR_NAME": "nosuch.module:Thing"},
            "connector_feed",
            "error: CONNECTOR_NAME=nosuch.module:Thing: cannot import connector module 'nosuch.module': "
            "No module named 'nosuch'",
            id="unknown-connector",
        ),
        pytest.param(
            {"STRATEGIES": "nosuch"},
            "strategy_engine",
            "error: STRATEGIES: unknown strategy 'nosuch': built-ins are ['vwap'], or use "
            "package.module:ClassName",
            id="unknown-strategy",
        ),
        pytest.param(
            {
                "DATA_SOURCE": "hft_connector",
                "CONNECTOR_NAME": "replay",
                "REPLAY_PATH": "missing/day.jsonl.gz",
            },
            "connector_feed",
            "error: REPLAY_PATH=missing/day.jsonl.gz: no such file or folder",
            id="missing-replay-file",
        ),
    ],
)
def test_up_exits_non_zero_with_the_failing_services_own_error_line(
    tmp_path: Path, extra: dict[str, str], service: str, said: str
) -> None:
    port = free_port()

    up = _up(tmp_path, _env(port, **extra), "--ready-timeout-s", "20")
    output, _ = up.communicate(timeout=60)

    assert up.returncode == 1, output
    assert f"✗ {service} exited with code 1; it said:\n    {said}\n" in output  # whole, on one line
    assert f"the stack did not start: {service} exited with code 1." in output
    assert "stack is up" not in output
    assert not is_listening("127.0.0.1", port), "the nats-server it started is still running"
    assert not any(_alive(pid) for pid in _pids(output).values()), "a service outlived `up`"


def test_a_service_that_dies_later_ends_up_non_zero(tmp_path: Path) -> None:
    up = _up(tmp_path, _env(free_port()))
    try:
        started = _read_until(up, "Ctrl-C stops everything")
        pids = _pids(started)
        os.kill(pids["context"], signal.SIGKILL)
        rest, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert "stack is up." in started
    assert up.returncode == 1
    assert "✗ context was killed by SIGKILL; it logged no error" in rest
    assert "context stopped: stopping the stack" in rest
    assert not any(_alive(pid) for pid in pids.values())


def test_keep_going_reports_the_failure_and_keeps_the_others(tmp_path: Path) -> None:
    up = _up(tmp_path, _env(free_port(), STRATEGIES="nosuch"), "--keep-going")
    try:
        started = _read_until(up, "Ctrl-C stops everything")
        pids = _pids(started)
        running = {name: _alive(pid) for name, pid in pids.items()}
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert "error: STRATEGIES: unknown strategy 'nosuch'" in started
    assert "the stack is running without strategy_engine:" in started
    assert running == {"connector_feed": True, "context": True}
    assert up.returncode == 0, rest


def test_each_run_writes_fresh_logs_and_keeps_the_previous_runs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for name in ("first", "second"):
        env = _env(free_port(), DATA_SOURCE="hft_connector", CONNECTOR_NAME=f"{name}.module:Thing")
        assert _up(tmp_path, env).wait(timeout=60) == 1

    current = (logs / "connector_feed.log").read_text()
    previous = (logs / "connector_feed.log.1").read_text()

    assert "second.module" in current and "first.module" not in current
    assert "first.module" in previous and "second.module" not in previous


def test_the_banner_names_an_unreachable_venue(tmp_path: Path) -> None:
    env = _env(
        free_port(),
        DATA_SOURCE="binance_ws",
        BINANCE_WS_URL="wss://nosuch.invalid:9443",
        BINANCE_REST_URL="https://nosuch.invalid",
    )
    up = _up(tmp_path, env)
    try:
        banner = _read_until(up, "Ctrl-C stops everything")
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert "stack is running, but not healthy:" in banner
    assert "stack is up" not in banner
    line = next(line for line in banner.splitlines() if "connector_feed down:" in line)
    assert line.startswith("  ● connector_feed down: not connected: cannot resolve nosuch.invalid (")
    assert up.returncode == 0  # a venue out of reach is not a crash: the feed keeps trying
