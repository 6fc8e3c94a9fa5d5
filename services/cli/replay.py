"""``hftfeed replay PATH``: a recording through the whole local stack, with its progress in sight.

It checks the recording first (a missing file or a wrong folder is said at once, not in a log),
then runs ``hftfeed up`` on it as a child process (DATA_SOURCE=hft_connector CONNECTOR_NAME=replay
REPLAY_PATH REPLAY_SPEED, SYMBOLS = the recorded symbols, so the consumers follow them), passes
its lines on, and follows the replay through the feed's health: a progress bar in a terminal,
a line every few seconds elsewhere. When the replay has finished it says what was published; the
stack stays up for a look (``hftfeed top``, ``hftfeed snapshot``) until Ctrl-C, or stops at once
with ``--exit-when-done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from services.cli.client import ask_health
from services.common.natsauth import NatsSecurity
from services.common.natsserver import host_port, is_listening
from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings

POLL_S = 0.5
#: Without a terminal: a progress line this often.
LINE_EVERY_S = 5.0
FEED = "connector_feed"


@dataclass(frozen=True)
class ReplayState:
    """The replay as the feed's health tells it."""

    percent: float
    lines: int
    position: str | None
    lines_per_s: int
    finished: bool
    file_errors: int
    published: dict[str, int]

    def text(self) -> str:
        published = " ".join(f"{kind}={count}" for kind, count in sorted(self.published.items()))
        return (
            f"{self.percent:5.1f}%  lines={self.lines}  at {self.position or '-'}  "
            f"{self.lines_per_s} lines/s  published {published or '-'}"
            + (f"  file errors={self.file_errors}" if self.file_errors else "")
        )


def replay_state(health: dict[str, Any]) -> ReplayState | None:
    """The replay section of the feed's health reply (None: no replay there, or no reply)."""
    replay = (health.get("connector") or {}).get("connector_health", {}).get("replay")
    if not isinstance(replay, dict):
        return None
    published = health.get("published")
    return ReplayState(
        percent=float(replay.get("percent") or 0.0),
        lines=int(replay.get("lines") or 0),
        position=replay.get("position"),
        lines_per_s=int(replay.get("lines_per_s") or 0),
        finished=bool(replay.get("finished")),
        file_errors=len(replay.get("errors") or []),
        published={str(k): int(v) for k, v in published.items()} if isinstance(published, dict) else {},
    )


def stack_env(path: Path, speed: float, symbols: list[str], width: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATA_SOURCE": "hft_connector",
            "CONNECTOR_NAME": "replay",
            "REPLAY_PATH": str(path.resolve()),
            "REPLAY_SPEED": f"{speed:g}",
            "SYMBOLS": ",".join(symbols),
            "COLUMNS": str(width),  # up's lines, never cut at 80 columns
        }
    )
    return env


async def _connect(url: str, security: NatsSecurity) -> Client | None:
    try:
        return await asyncio.wait_for(
            nats.connect(url, allow_reconnect=False, connect_timeout=1, **security.connect_options(url)), 2.0
        )
    except (TimeoutError, OSError, NatsError):
        return None


async def _stack_already_running(url: str, security: NatsSecurity) -> bool:
    if not is_listening(*host_port(url)):
        return False
    nc = await _connect(url, security)
    if nc is None:
        return False
    try:
        return bool((await ask_health(nc, FEED, 0.5))["status"] != "no reply")
    finally:
        await nc.close()


async def replay_command(
    path: Path, speed: float, log_dir: Path, exit_when_done: bool, url: str, security: NatsSecurity
) -> int:
    console = Console(highlight=False, soft_wrap=True)  # lines are never cut or wrapped at a width
    try:  # what the feed would refuse, refused here with the same words
        connector = ReplayConnector(ReplaySettings(replay_path=path, replay_speed=speed))
    except ValueError as error:
        sys.stderr.write(f"hftfeed replay: {error}\n")
        return 2
    venue_symbols = sorted({f.name.rsplit("_", 1)[0] for f in connector.files} - {"_connection"})
    if await _stack_already_running(url, security):
        sys.stderr.write(
            f"hftfeed replay: a feed already answers at {url}: stop that stack first, "
            "or set NATS_URL to a free local port\n"
        )
        return 1
    width = console.width if console.is_terminal else 200
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "up",
        "--log-dir",
        str(log_dir),
        env=stack_env(path, speed, venue_symbols, width),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us; we stop `up` once, and it stops the rest
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    progress = _progress(console)
    relay = asyncio.create_task(_relay(child, progress.console if progress else console))
    try:
        with progress or contextlib.nullcontext():
            await _follow(url, security, child, stop, progress, exit_when_done, console)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
        code = await child.wait()
        await relay
    return code


def _progress(console: Console) -> Progress | None:
    if not console.is_terminal:
        return None
    return Progress(
        TextColumn("replay"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
    )


async def _relay(child: asyncio.subprocess.Process, console: Console) -> None:
    """``up``'s own lines, passed on as they come (above the bar in a terminal)."""
    assert child.stdout is not None
    while line := await child.stdout.readline():
        with contextlib.suppress(BrokenPipeError):
            console.print(line.decode(errors="replace").rstrip("\n"), markup=False, highlight=False)


async def _follow(
    url: str,
    security: NatsSecurity,
    child: asyncio.subprocess.Process,
    stop: asyncio.Event,
    progress: Progress | None,
    exit_when_done: bool,
    console: Console,
) -> None:
    """Poll the feed's health until Ctrl-C, the stack's end, or (``exit_when_done``) the replay's end."""
    task = progress.add_task("replay", total=100.0, detail="starting the stack ...") if progress else None
    nc: Client | None = None
    last_line = 0.0
    reported = False
    try:
        while not stop.is_set() and child.returncode is None:
            if nc is None and is_listening(*host_port(url)):
                nc = await _connect(url, security)
            state = replay_state(await ask_health(nc, FEED, 1.0)) if nc is not None else None
            if state is not None and progress is not None and task is not None:
                progress.update(task, completed=state.percent, detail=state.text())
            elif state is not None and time.monotonic() - last_line >= LINE_EVERY_S:
                last_line = time.monotonic()
                with contextlib.suppress(BrokenPipeError):
                    console.print(f"replay {state.text()}", markup=False, highlight=False)
            if state is not None and state.finished and not reported:
                reported = True
                (progress.console if progress else console).print(
                    f"replay finished: {state.text()}"
                    + (
                        ""
                        if exit_when_done
                        else "\nthe stack stays up: `hftfeed top` to look; Ctrl-C stops it"
                    ),
                    markup=False,
                    highlight=False,
                )
                if exit_when_done:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
    finally:
        if nc is not None:
            await nc.close()
