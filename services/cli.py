"""``hftfeed``: run the services and talk to them."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="HFT connector feed: market data on NATS.")


@app.callback()
def _root() -> None:
    """HFT connector feed: normalised market data on NATS."""


@app.command("connector-feed")
def connector_feed() -> None:
    """Run connector_feed in the foreground (settings from the environment / .env)."""
    from services.connector_feed.__main__ import main as run

    raise typer.Exit(run())


def main() -> None:
    app()
