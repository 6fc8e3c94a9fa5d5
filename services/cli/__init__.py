"""``hftfeed``: run the services, the local stack, and talk to them over NATS."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.cli.commands import register
from services.common.logging import configure_logging
from services.common.settings import CommonSettings, SettingsError, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich")

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable JSON instead of a table")]


@app.callback()
def _root() -> None:
    """HFT connector feed: normalised market data on NATS."""
    # The CLI's own log lines (if any) go to stderr: stdout is for tables and --json output.
    # Service commands reconfigure logging to stdout when they start.
    configure_logging("WARNING", stream=sys.stderr)


def _common_settings() -> CommonSettings:
    try:
        return load_settings(CommonSettings)
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


@app.command("connector-feed")
def connector_feed() -> None:
    """Run connector_feed in the foreground (settings from the environment / .env)."""
    from services.connector_feed.__main__ import main

    raise typer.Exit(main())


@app.command("strategy-engine")
def strategy_engine() -> None:
    """Run strategy_engine in the foreground."""
    from services.strategy_engine.__main__ import main

    raise typer.Exit(main())


@app.command("context")
def context() -> None:
    """Run the context service in the foreground."""
    from services.context.__main__ import main

    raise typer.Exit(main())


@app.command("record-npz")
def record_npz() -> None:
    """Record md.<SYMBOL>.trades/depth (SYMBOLS, NATS_URL) into hftbacktest .npz files under NPZ_DIR."""
    from services.cli.record_npz import main

    raise typer.Exit(main())


@app.command("up")
def up(
    log_dir: Annotated[str, typer.Option(help="where the services' JSON logs go")] = ".hftfeed/logs",
    ready_timeout_s: Annotated[float, typer.Option(help="how long to wait for each service's health")] = 30.0,
    secure: Annotated[
        bool, typer.Option("--secure", help="own nats-server with mutual TLS and one identity per service")
    ] = False,
    pki_dir: Annotated[str, typer.Option(help="where --secure keeps its certificates")] = ".hftfeed/pki",
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="when a service fails, report it and keep the others running"),
    ] = False,
) -> None:
    """Run the local stack: nats-server (if none is running at NATS_URL) + the three services.

    Uses the stub connector unless DATA_SOURCE is set. Exits 1, with the failing service's own
    error, when a service fails to start or stops (unless --keep-going). Ctrl-C stops everything.
    With --secure, see docs/security.md; the rest: docs/operations.md.
    """
    from services.cli.up import run_stack
    from services.connector_feed.binance.settings import BinanceSettings
    from services.connector_feed.settings import FeedSettings

    settings = _common_settings()
    try:
        # A source chosen in the environment or .env: DATA_SOURCE, or a Binance market (BINANCE_MARKET).
        feed = load_settings(FeedSettings)
        source_chosen = (
            "data_source" in feed.model_fields_set
            or "binance_market" in load_settings(BinanceSettings).model_fields_set
        )
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    # The feed's HTTP address when the user chose HTTP_PORT (else `up` picks one).
    http = (feed.http_host, feed.http_port) if feed.http_port is not None else None
    logs = Path(log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    pki = Path(pki_dir) if secure else None
    raise typer.Exit(
        asyncio.run(run_stack(settings, logs, ready_timeout_s, source_chosen, pki, keep_going, http))
    )


@app.command("health")
def health(
    service: Annotated[str | None, typer.Argument(help="connector_feed | strategy_engine | context")] = None,
    as_json: JsonFlag = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="seconds to wait for each reply")] = 2.0,
) -> None:
    """Ask services for their health over NATS; exits 1 if any is down or does not answer."""
    from services.cli.client import SERVICES, health_command

    names = SERVICES if service is None else [service.replace("-", "_")]
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        typer.echo(f"unknown service {service!r}: choose from {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    settings = _common_settings()
    raise typer.Exit(
        asyncio.run(health_command(settings.nats_url, names, as_json, timeout_s, settings.nats_security()))
    )


@app.command("snapshot")
def snapshot(
    symbol: Annotated[str, typer.Argument(help="a symbol the context service keeps (SYMBOLS)")],
    as_json: Annotated[bool, typer.Option("--json", help="the ContextSnapshot as pretty JSON")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="seconds to wait for the reply")] = 2.0,
) -> None:
    """Ask the context service for SYMBOL's rolling context: price, flow, VWAP, book, last trades.

    Exits 1 on an error reply (e.g. a symbol it does not keep) or no reply.
    """
    from services.cli.client import snapshot_command

    settings = _common_settings()
    raise typer.Exit(
        asyncio.run(snapshot_command(settings.nats_url, symbol, as_json, timeout_s, settings.nats_security()))
    )


@app.command("sub")
def sub(
    subject: Annotated[str, typer.Argument(help="subject, wildcards allowed (md.BTCUSDT.trades, md.>)")],
    as_json: Annotated[
        bool, typer.Option("--json", help='one JSON object per line: {"subject": ..., <the message>}')
    ] = False,
    count: Annotated[int, typer.Option(help="exit after this many messages (0 = run until Ctrl-C)")] = 0,
) -> None:
    """Print live messages from NATS, readably (or raw JSON with --json)."""
    from services.cli.client import sub_command

    settings = _common_settings()
    raise typer.Exit(
        asyncio.run(sub_command(settings.nats_url, subject, as_json, count, settings.nats_security()))
    )


register(app)  # top, record, replay (services/cli/commands.py)


def main() -> None:
    app()
