"""``hftfeed top``, ``record`` and ``replay``: their options; the work is in ``top``, ``record``, ``replay``
(imported when the command runs, so ``hftfeed --help`` stays quick)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from services.common.settings import CommonSettings, SettingsError, load_settings


def register(app: typer.Typer) -> None:
    app.command("top")(top)
    app.command("record")(record)
    app.command("replay")(replay)


def top(
    interval_s: Annotated[float, typer.Option("--interval", help="seconds between refreshes")] = 1.0,
    iterations: Annotated[int, typer.Option(help="stop after this many refreshes (0 = until Ctrl-C)")] = 0,
    once: Annotated[
        bool, typer.Option("--once", help="one refresh, printed (same as --iterations 1)")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="the data behind each refresh, one JSON document per line")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="seconds to wait for each health reply")
    ] = 1.0,
) -> None:
    """A live view of the stack: services, connector, rates, queues, lag, books, signals, errors.

    Refreshes from the services' health replies and the bus (md.*.trades/depth/status, signals.>).
    Full screen in a terminal; elsewhere (a pipe, a file) each refresh is printed as text.
    """
    from services.cli.top import run_top

    settings = _common()
    count = 1 if once else iterations
    raise typer.Exit(
        asyncio.run(
            run_top(settings.nats_url, interval_s, count, as_json, timeout_s, settings.nats_security())
        )
    )


def record(
    out: Annotated[
        Path, typer.Argument(help="where the recording goes: OUT/<exchange>/<SYMBOL>_<YYYYMMDD>.gz")
    ],
    source: Annotated[
        str, typer.Option(help="stub: the stub's market as Binance spot frames; replay: cut a recording")
    ] = "stub",
    seconds: Annotated[
        float, typer.Option(help="stub: seconds of trading; replay: seconds of recorded time from its start")
    ] = 60.0,
    replay_from: Annotated[
        Path | None, typer.Option("--from", help="--source replay: a recording, or a folder of them")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="comma-separated (default: SYMBOLS for the stub, all for a replay)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="stub: same seed, same recording (default STUB_SEED)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="stub: the recording's start, ISO 8601 UTC (default: now)")
    ] = None,
) -> None:
    """Make a recording offline, in the format the feed records live Binance (RECORD_DIR).

    From the stub (rates and swing from STUB_*), written at once on a simulated clock, or cut from
    the start of an existing recording (--source replay --from PATH). Replay it with
    `hftfeed replay OUT/binance`.
    """
    from services.cli.record import record_command
    from services.connector_feed.stub import StubSettings

    if source not in ("stub", "replay"):
        typer.echo(f"--source must be stub or replay, not {source!r}", err=True)
        raise typer.Exit(2)
    if seconds <= 0:
        typer.echo("--seconds must be > 0", err=True)
        raise typer.Exit(2)
    overrides: dict[str, object] = {}
    if symbols is not None:
        overrides["symbols"] = symbols
    if seed is not None:
        overrides["stub_seed"] = seed
    try:
        stub = StubSettings(**overrides) if overrides else load_settings(StubSettings)  # type: ignore[arg-type]
        start_ns = time.time_ns() if start is None else int(datetime.fromisoformat(start).timestamp() * 1e9)
    except (SettingsError, ValueError) as error:
        typer.echo(f"hftfeed record: {error}", err=True)
        raise typer.Exit(2) from None
    wanted = stub.symbols if symbols is not None else None
    raise typer.Exit(record_command(out, source, seconds, replay_from, wanted, stub, start_ns))


def replay(
    path: Annotated[
        Path, typer.Argument(help="a recording, or a folder of them (<exchange>/<SYMBOL>_<day>.gz)")
    ],
    speed: Annotated[float, typer.Option(help="1 = as recorded, 10 = ten times faster, 0 = flat out")] = 1.0,
    log_dir: Annotated[str, typer.Option(help="where the services' JSON logs go")] = ".hftfeed/logs",
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="stop the stack once the replay has finished")
    ] = False,
) -> None:
    """Replay a recording through the whole local stack (`hftfeed up` on it), with a progress bar.

    The feed decodes the recorded frames with the live Binance code and publishes what the live
    feed published; strategy_engine and context follow the recorded symbols. Ctrl-C stops it all.
    """
    from services.cli.replay import replay_command

    settings = _common()
    raise typer.Exit(
        asyncio.run(
            replay_command(
                path, speed, Path(log_dir), exit_when_done, settings.nats_url, settings.nats_security()
            )
        )
    )


def _common() -> CommonSettings:
    try:
        return load_settings(CommonSettings)
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
