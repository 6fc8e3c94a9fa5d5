"""``hftfeed sub``, ``health`` and ``snapshot`` in shell pipelines: real processes, real pipes, a real
nats-server and the three services on the stub connector."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.natsserver import free_port
from tests.test_telemetry import _env, services

ROOT = Path(__file__).resolve().parent.parent
HFTFEED = [sys.executable, "-m", "services.cli"]
LINE_START = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")


@pytest.fixture(scope="module")
def stack(nats_url: str) -> Iterator[tuple[dict[str, str], str]]:
    """The three services on a symbol of their own; yields (the CLI's environment, the symbol)."""
    symbol = "P" + uuid.uuid4().hex[:8].upper()
    env = _env(nats_url, symbol)
    with services(env):
        deadline = time.monotonic() + 20
        while run(["health", "--timeout", "1"], env).returncode != 0:  # all three answer "ok"
            assert time.monotonic() < deadline, "the services never became healthy"
        yield env, symbol


def run(args: list[str], env: dict[str, str], timeout_s: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HFTFEED, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def pipeline(
    args: list[str], reader: list[str], env: dict[str, str], timeout_s: float = 20
) -> tuple[int, str, str]:
    """``hftfeed ARGS | READER``: (hftfeed's exit code, its stderr, the reader's output)."""
    writer = subprocess.Popen(
        [*HFTFEED, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None and writer.stderr is not None
    consumer = subprocess.Popen(reader, stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()  # the reader holds the only read end: when it exits, the pipe is closed
    output, _ = consumer.communicate(timeout=timeout_s)
    try:
        code = writer.wait(timeout=timeout_s)
    finally:
        writer.kill()
    return code, writer.stderr.read().decode(), output.decode()


# --- sub ---------------------------------------------------------------------------------------------


def test_sub_into_head_stops_quietly(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    code, stderr, output = pipeline(["sub", f"md.{symbol}.>"], ["head", "-2"], env)

    assert (code, stderr) == (0, "")
    lines = output.splitlines()
    assert len(lines) == 2 and all(f"md.{symbol}." in line for line in lines), output


def test_sub_json_into_head_exits_with_subject_on_each_line(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    code, stderr, output = pipeline(["sub", f"md.{symbol}.trades", "--json"], ["head", "-1"], env)

    assert (code, stderr) == (0, "")
    line = json.loads(output)
    assert line["subject"] == f"md.{symbol}.trades"
    assert line["symbol"] == symbol and isinstance(line["price"], str)  # the TradeTick's own fields


def test_sub_exits_when_its_reader_goes_away_before_any_message(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack
    started = time.monotonic()

    code, stderr, output = pipeline(["sub", f"silent.{symbol}", "--json"], ["true"], env, timeout_s=10)

    assert (code, stderr, output) == (0, "", "")
    assert time.monotonic() - started < 10


def test_sub_streams_each_line_as_it_comes(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack
    process = subprocess.Popen(
        [*HFTFEED, "sub", f"md.{symbol}.trades", "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], 10)
        first = process.stdout.readline() if ready else b""
        still_running = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)

    assert json.loads(first)["subject"] == f"md.{symbol}.trades"  # a line, long before 8 KiB of buffer
    assert still_running
    assert code == 0


def test_sub_lines_are_never_wrapped_in_a_pipe(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    result = run(["sub", f"md.{symbol}.depth", "--count", "3"], env)

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert all(LINE_START.match(line) and "levels)" in line for line in lines)  # one record, one line
    assert max(map(len, lines)) > 80  # longer than a terminal's default width, and not cut


# --- health ------------------------------------------------------------------------------------------


def test_health_in_a_pipe_is_one_line_of_fields_per_service(stack: tuple[dict[str, str], str]) -> None:
    env, _ = stack

    result = run(["health"], env)

    assert (result.returncode, result.stderr) == (0, "")
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert sorted(lines) == ["connector_feed", "context", "strategy_engine"]
    assert all(line.split()[1] == "ok" for line in lines.values())
    assert re.search(r" published\.trade=\d+ ", lines["connector_feed"])
    assert re.search(r" connected=true ", lines["connector_feed"])
    assert re.search(r" consumed\.trade=\d+ ", lines["context"])
    assert re.search(r" strategies\.vwap\.queue=\d+", lines["strategy_engine"])
    assert not any(c in result.stdout for c in "{}'"), "details must be fields, not dicts"


def test_health_into_head_is_quiet_and_keeps_its_exit_code(stack: tuple[dict[str, str], str]) -> None:
    env, _ = stack

    code, stderr, output = pipeline(["health"], ["head", "-1"], env)

    assert (code, stderr) == (0, "")
    assert output.split()[:2] == ["connector_feed", "ok"]


# --- snapshot ----------------------------------------------------------------------------------------


def test_snapshot_json_is_pretty_json(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    result = run(["snapshot", symbol, "--json"], env)

    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["symbol"] == symbol
    assert result.stdout.startswith("{\n  ")


def test_snapshot_json_into_head_is_quiet(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack

    code, stderr, output = pipeline(["snapshot", symbol, "--json"], ["head", "-1"], env)

    assert (code, stderr, output) == (0, "", "{\n")


def test_snapshot_in_a_terminal_is_a_readable_summary(stack: tuple[dict[str, str], str]) -> None:
    env, symbol = stack
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [*HFTFEED, "snapshot", symbol], env=env, cwd=ROOT, stdout=terminal, stderr=subprocess.PIPE
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other end closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    code = process.wait(timeout=10)
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # colours off

    assert code == 0
    assert text.startswith(f"{symbol} (stub)  last ")
    assert re.search(r"book +synced u=\d+ +bid \d+\.\d+ \| ask \d+\.\d+", text), text
    assert re.search(r"last \d+ trades \(oldest first\)", text)
    assert re.search(r"(BUY|SELL) +0\.\d+ @ \d+\.\d+ +id=\d+", text)
    assert "{" not in text


def test_snapshot_of_an_unknown_symbol_says_why(stack: tuple[dict[str, str], str]) -> None:
    env, _ = stack

    result = run(["snapshot", "NO_SUCH_SYMBOL"], env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "error 404" in result.stderr and "unknown symbol 'NO_SUCH_SYMBOL'" in result.stderr


# --- no NATS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["sub", "md.>"], ["health"], ["snapshot", "BTCUSDT"]], ids=lambda a: a[0])
def test_without_nats_the_error_says_what_to_do(args: list[str]) -> None:
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{free_port()}"}

    result = run(args, env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot connect to NATS at nats://127.0.0.1:" in result.stderr
    assert "hftfeed up" in result.stderr and "NATS_URL" in result.stderr
    assert "Traceback" not in result.stderr
