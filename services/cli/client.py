"""``hftfeed health``, ``snapshot`` and ``sub``: small NATS clients for people and for pipes.

In a terminal they print colour and tables; in a pipe, plain lines that are never cut or wrapped and
are flushed one by one; ``--json`` gives one JSON document per line (``snapshot --json``: pretty).
A reader that goes away ends them quietly (see ``services.cli.output``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from opentelemetry import trace
from rich.markup import escape
from rich.table import Table

from schemas import subjects
from services.cli.output import Output, clock, health_details, health_line, snapshot_lines
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
                reconnect_time_wait=0.1,  # the one retry of a refused connect: at once, not after 2 s
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
        raise SystemExit(
            f"cannot connect to NATS at {redact_url(url)}: {reason}\n"
            "  Is the stack running? Start it with `hftfeed up` (or `docker compose up -d`),\n"
            "  or set NATS_URL (in the environment or .env) to your NATS server."
        ) from None


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
    out = Output()
    nc = await connect(url, security=security)
    telemetry = cli_telemetry()
    try:
        tracer = telemetry.tracer()
        replies = await asyncio.gather(*(ask_health(nc, s, timeout_s, tracer) for s in services))
    finally:
        await nc.close()
        telemetry.shutdown()
    if as_json:
        out.write(orjson.dumps({r["service"]: r for r in replies}).decode() + "\n")
    elif out.terminal:
        out.show(health_table(replies))
    else:
        for reply in replies:
            out.write(health_line(reply) + "\n")
    return 0 if all(r["status"] in ("ok", "degraded") for r in replies) else 1


def health_table(replies: list[dict[str, Any]]) -> Table:
    table = Table(title="hftfeed health")
    for column in ("service", "status", "uptime", "version", "details"):
        table.add_column(column, overflow="fold")
    for reply in replies:
        status = reply.get("status", "?")
        uptime = reply.get("uptime_s")
        table.add_row(
            reply.get("service", "?"),
            f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]",
            f"{uptime:.0f}s" if isinstance(uptime, int | float) else "-",
            reply.get("version", "-"),
            escape(health_details(reply)),
        )
    return table


async def snapshot_command(
    url: str, symbol: str, as_json: bool, timeout_s: float, security: NatsSecurity | None = None
) -> int:
    """``hftfeed snapshot SYMBOL``: the context service's ContextSnapshot (CLIENT span): a readable
    summary, or pretty JSON with ``--json``; exit 1 on an error reply or no reply."""
    out = Output()
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
                sys.stderr.write(
                    f"no reply on {subject}: {type(error).__name__} (is the context service running? "
                    "`hftfeed health context`)\n"
                )
                return 1
    finally:
        await nc.close()
        telemetry.shutdown()
    error_code = (reply.headers or {}).get(ERROR_CODE_HEADER)
    try:
        body: Any = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        body = reply.data.decode(errors="replace")
    if as_json:
        out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif error_code or not isinstance(body, dict):
        message = (reply.headers or {}).get(ERROR_HEADER) or body
        sys.stderr.write(f"{subject}: error {error_code}: {message}\n")
    else:
        for line in snapshot_lines(body):
            if not out.line(line):
                break
    return 1 if error_code else 0


def json_line(msg: Msg) -> str:
    """The message as one JSON line that names its subject: ``{"subject": ..., <the message's fields>}``
    (a payload that is not a JSON object goes under ``data``, as JSON or as text)."""
    try:
        data: Any = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        data = msg.data.decode(errors="replace")
    if isinstance(data, dict) and "subject" not in data:
        return orjson.dumps({"subject": msg.subject, **data}).decode() + "\n"
    return orjson.dumps({"subject": msg.subject, "data": data}).decode() + "\n"


async def sub_command(
    url: str, subject: str, as_json: bool, count: int, security: NatsSecurity | None = None
) -> int:
    out = Output()
    nc = await connect(url, security=security)
    done = asyncio.Event()
    received = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal received
        if done.is_set():
            return
        received += 1
        written = out.write(json_line(msg)) if as_json else out.line(describe(msg))
        if not written or (count and received >= count):
            done.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    out.watch_reader(loop, done.set)
    try:
        await nc.subscribe(subject, cb=on_msg)
    except NatsError as error:
        await nc.close()
        raise SystemExit(f"cannot subscribe to {subject!r}: {error}") from None
    if sys.stderr.isatty():
        sys.stderr.write(f"listening on {subject} at {redact_url(url)} (Ctrl-C to stop)\n")
    await done.wait()
    out.stop_watching(loop)
    await nc.close()
    return 0


def describe(msg: Msg) -> str:
    """One readable line per message (rich markup); unknown shapes fall back to compact JSON."""
    now = clock(time.time_ns())
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
