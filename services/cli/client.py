"""``hftfeed health`` and ``hftfeed sub``: small NATS clients for people (tables) and machines (JSON)."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from opentelemetry import trace
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schemas import subjects
from services.common import messaging
from services.common.natsauth import (
    NatsSecurity,
    describe_connect_failure,
    permission_violation,
    redact_url,
    servers,
)
from services.common.telemetry import Telemetry, setup_telemetry

SERVICES = ["connector_feed", "strategy_engine", "context"]
CLI_SERVICE = "hftfeed_cli"
_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "down": "red", "no reply": "red"}


async def _quiet(error: Exception) -> None:
    """nats-py's default error callback prints tracebacks; the CLI reports failures itself, except
    the server's refusals (a denied subscription would otherwise just stay silent)."""
    if permission_violation(error) is not None:
        sys.stderr.write(f"{error}\n")


async def _quiet_event() -> None:
    pass


async def connect(url: str, timeout_s: float = 3.0, security: NatsSecurity | None = None) -> Client:
    """One attempt, bounded (a TLS failure would otherwise hang: nats-io/nats.py#718); the error
    names the URL without its credentials."""
    security = security or NatsSecurity()
    try:
        return await asyncio.wait_for(
            nats.connect(
                servers(url),
                connect_timeout=2,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=_quiet,
                disconnected_cb=_quiet_event,
                closed_cb=_quiet_event,
                **security.connect_options(url),
            ),
            timeout_s,
        )
    except (TimeoutError, OSError, NatsError) as error:
        reason = describe_connect_failure(error, security.secrets(url))
        raise SystemExit(f"cannot connect to NATS at {redact_url(url)}: {reason}") from None


async def ask_health(
    nc: Client, service: str, timeout_s: float, tracer: trace.Tracer | None = None
) -> dict[str, Any]:
    """The service's health reply, or a synthetic ``no reply`` record (a CLIENT span if traced)."""
    subject = subjects.health(service)
    with messaging.client_span(tracer or trace.NoOpTracer(), f"health {service}", subject) as headers:
        try:
            reply = await nc.request(subject, b"", timeout=timeout_s, headers=headers or None)
            body: dict[str, Any] = orjson.loads(reply.data)
            return body
        except (TimeoutError, NatsError, orjson.JSONDecodeError) as error:
            return {"service": service, "status": "no reply", "reasons": [type(error).__name__]}


def cli_telemetry() -> Telemetry:
    """Telemetry for the CLI's own requests (only when an OTLP endpoint is configured)."""
    return setup_telemetry(CLI_SERVICE)


async def health_command(
    url: str, services: list[str], as_json: bool, timeout_s: float, security: NatsSecurity | None = None
) -> int:
    nc = await connect(url, security=security)
    telemetry = cli_telemetry()
    try:
        tracer = telemetry.tracer()
        replies = await asyncio.gather(*(ask_health(nc, s, timeout_s, tracer) for s in services))
    finally:
        await nc.close()
        telemetry.shutdown()
    if as_json:
        sys.stdout.write(orjson.dumps({r["service"]: r for r in replies}).decode() + "\n")
    else:
        Console().print(health_table(replies))
    return 0 if all(r["status"] in ("ok", "degraded") for r in replies) else 1


def health_table(replies: list[dict[str, Any]]) -> Table:
    table = Table(title="hftfeed health")
    for column in ("service", "status", "uptime", "version", "details"):
        table.add_column(column)
    for reply in replies:
        status = reply.get("status", "?")
        uptime = reply.get("uptime_s")
        table.add_row(
            reply.get("service", "?"),
            f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]",
            f"{uptime:.0f}s" if isinstance(uptime, int | float) else "-",
            reply.get("version", "-"),
            _details(reply),
        )
    return table


def _details(reply: dict[str, Any]) -> str:
    parts = list(reply.get("reasons", []))
    connector = reply.get("connector")
    if connector:
        parts.append(
            f"connected={connector.get('connected')} last_ts={connector.get('last_ts')} "
            f"queue={connector.get('queue_size')} reconnects={connector.get('reconnection_attempts')}"
        )
    if "consumed" in reply:
        parts.append(f"consumed={reply['consumed']}")
    return "\n".join(parts) or "-"


async def snapshot_command(
    url: str, symbol: str, timeout_s: float, security: NatsSecurity | None = None
) -> int:
    """``hftfeed snapshot SYMBOL``: the context service's ContextSnapshot as JSON (CLIENT span)."""
    nc = await connect(url, security=security)
    telemetry = cli_telemetry()
    subject = subjects.context_snapshot(symbol)
    try:
        with messaging.client_span(
            telemetry.tracer(), f"query {subjects.CONTEXT_SNAPSHOT_TEMPLATE}", subject
        ) as h:
            try:
                reply = await nc.request(subject, b"", timeout=timeout_s, headers=h or None)
            except (TimeoutError, NatsError) as error:
                sys.stderr.write(f"no reply on {subject}: {error!r} (is the context service running?)\n")
                return 1
    finally:
        await nc.close()
        telemetry.shutdown()
    sys.stdout.write(reply.data.decode(errors="replace") + "\n")
    error_code = (reply.headers or {}).get("Nats-Service-Error-Code")
    return 1 if error_code else 0


async def sub_command(
    url: str, subject: str, as_json: bool, count: int, security: NatsSecurity | None = None
) -> int:
    nc = await connect(url, security=security)
    done = asyncio.Event()
    received = 0
    console = Console(highlight=False)

    async def on_msg(msg: Msg) -> None:
        nonlocal received
        received += 1
        if as_json:
            sys.stdout.write(msg.data.decode(errors="replace") + "\n")
            sys.stdout.flush()
        else:
            console.print(describe(msg))
        if count and received >= count:
            done.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    try:
        await nc.subscribe(subject, cb=on_msg)
    except NatsError as error:
        await nc.close()
        raise SystemExit(f"cannot subscribe to {subject!r}: {error!r}") from None
    if not as_json:
        console.print(f"[dim]listening on {subject} at {escape(redact_url(url))} (Ctrl-C to stop)[/]")
    await done.wait()
    await nc.drain()
    return 0


def describe(msg: Msg) -> str:
    """One readable line per message; unknown shapes fall back to compact JSON."""
    now = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    try:
        body = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return f"[dim]{now}[/] {msg.subject} [red]not JSON[/] {escape(repr(msg.data[:120]))}"
    raw = escape(msg.data.decode(errors="replace"))
    if not isinstance(body, dict):
        return f"[dim]{now}[/] {msg.subject} {raw}"
    if msg.subject.endswith(".trades") and "price" in body:
        colour = "green" if body.get("side") == "buy" else "red"
        return (
            f"[dim]{now}[/] {msg.subject} [{colour}]{body.get('side', '?').upper():4}[/] "
            f"{body.get('qty')} @ {body.get('price')}  id={body.get('trade_id')}"
        )
    if msg.subject.endswith(".depth") and "bids" in body:
        bids, asks = body.get("bids") or [], body.get("asks") or []
        bid = f"{bids[0][1]} @ {bids[0][0]}" if bids else "-"
        ask = f"{asks[0][1]} @ {asks[0][0]}" if asks else "-"
        kind = "snapshot" if body.get("is_snapshot") else "delta"
        return (
            f"[dim]{now}[/] {msg.subject} {kind:8} bid [green]{bid}[/] | ask [red]{ask}[/] "
            f"({len(bids)}/{len(asks)} levels) u={body.get('last_update_id')}"
        )
    if msg.subject.startswith("signals.") and "side" in body:
        return (
            f"[dim]{now}[/] {msg.subject} [bold]{str(body.get('side')).upper()}[/] "
            f"strength={body.get('strength')} {escape(str(body.get('reason', '')))}"
        )
    return f"[dim]{now}[/] {msg.subject} {raw}"
