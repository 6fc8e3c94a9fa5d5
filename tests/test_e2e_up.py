"""End to end: `hftfeed up` as a process, observed from outside over NATS, then stopped with SIGINT."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jsonschema
import nats
from nats.aio.msg import Msg

from schemas import ContextSnapshot, subjects
from services.common.natsserver import free_port, is_listening
from tests.micro import gather, validated_discovery

ROOT = Path(__file__).parent.parent
SCHEMAS = {
    stem: json.loads((ROOT / "schemas" / "json" / f"{stem}.json").read_text())
    for stem in ("trade_tick", "depth_update")
}
SERVICES = ("connector_feed", "strategy_engine", "context")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _stack_env(url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATA_SOURCE", "CONNECTOR_", "STUB_", "SYMBOLS", "NATS_URL"))
    }
    env.update(
        {
            "NATS_URL": url,
            "STUB_TRADES_PER_S": "50",
            "STUB_DEPTH_PER_S": "10",
            "PYTHONPATH": str(ROOT),
            "HTTP_PORT": str(free_port()),
        }
    )
    return env


async def test_hftfeed_up_runs_the_whole_stack_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATA_SOURCE", "CONNECTOR_", "STUB_", "SYMBOLS", "NATS_URL"))
    }
    http_port = free_port()
    env.update(
        {
            "NATS_URL": url,
            "STUB_TRADES_PER_S": "50",
            "STUB_DEPTH_PER_S": "10",
            "PYTHONPATH": str(ROOT),
            "HTTP_PORT": str(http_port),
        }
    )
    stdout_path = tmp_path / "up.out"
    with stdout_path.open("wb") as out:
        up = subprocess.Popen(  # noqa: ASYNC220  (a plain child process, observed from outside)
            [sys.executable, "-m", "services.cli", "up", "--log-dir", str(tmp_path / "logs")],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not is_listening("127.0.0.1", port):
            assert up.poll() is None, stdout_path.read_text()
            assert time.monotonic() < deadline, "nats-server did not start"
            await asyncio.sleep(0.05)
        nc = await nats.connect(url)
        trades: list[Msg] = []
        depth: list[Msg] = []

        async def on_trade(msg: Msg) -> None:
            trades.append(msg)

        async def on_depth(msg: Msg) -> None:
            depth.append(msg)

        await nc.subscribe(subjects.trades("BTCUSDT"), cb=on_trade)
        await nc.subscribe(subjects.depth("BTCUSDT"), cb=on_depth)

        health: dict[str, dict[str, object]] = {}
        while len(health) < 3 or any(h["status"] != "ok" for h in health.values()):
            assert time.monotonic() < deadline + 20, f"not all ok: {health}\n{stdout_path.read_text()}"
            for service in SERVICES:
                try:
                    reply = await nc.request(subjects.health(service), b"", timeout=0.5)
                    health[service] = json.loads(reply.data)
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    pass
            await asyncio.sleep(0.1)

        pings = await gather(nc, "$SRV.PING")
        discovery = {s: await validated_discovery(nc, s) for s in SERVICES}
        reply = await nc.request(subjects.context_snapshot("BTCUSDT"), b"", timeout=2)
        snapshot = ContextSnapshot.model_validate_json(reply.data)
        await nc.drain()
        while "Ctrl-C stops everything" not in stdout_path.read_text():
            assert time.monotonic() < deadline + 30, stdout_path.read_text()
            await asyncio.sleep(0.1)
        seed_url = re.search(r"curl (http://\S+/ws/health)", stdout_path.read_text())
        assert seed_url is not None and seed_url.group(1) == f"http://127.0.0.1:{http_port}/ws/health"
        async with aiohttp.ClientSession() as session, session.get(seed_url.group(1)) as http_reply:
            seed_health = await http_reply.json()

        assert len(trades) > 0 and len(depth) > 0
        for msg in trades:
            jsonschema.validate(json.loads(msg.data), SCHEMAS["trade_tick"])
        for msg in depth:
            jsonschema.validate(json.loads(msg.data), SCHEMAS["depth_update"])
        assert sorted(p["name"] for p in pings) == sorted(SERVICES)
        assert all(d["info"]["description"] for d in discovery.values())
        assert snapshot.symbol == "BTCUSDT" and snapshot.trade_count > 0 and snapshot.book_synced
        assert seed_health["connector"]["connected"] is True  # the seed's command works under `up`
        assert seed_health["connector"]["connector_health"]["subscribed_trades"] is True

        output = stdout_path.read_text()
        child_pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        assert len(child_pids) == 4, output  # the server and three services

        health_cli = _cli(env, "health", "--json")
        assert health_cli.returncode == 0, health_cli.stderr
        assert {k: v["status"] for k, v in json.loads(health_cli.stdout).items()} == dict.fromkeys(
            SERVICES, "ok"
        )
        assert "connector_feed" in _cli(env, "health").stdout  # the readable table
        sub_cli = _cli(env, "sub", "md.BTCUSDT.trades", "--json", "--count", "3")
        assert sub_cli.returncode == 0
        assert [json.loads(line)["symbol"] for line in sub_cli.stdout.splitlines()] == ["BTCUSDT"] * 3

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=10) == 0
        assert not is_listening("127.0.0.1", port), "nats-server still listening"
        assert not any(_pid_alive(pid) for pid in child_pids), "a child outlived `hftfeed up`"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_hftfeed_up_keep_going_reports_a_child_that_dies_and_health_says_so(tmp_path: Path) -> None:
    """--keep-going: the old behaviour (the failure is shown, the rest keeps running, exit 0)."""
    port = free_port()
    env = _stack_env(f"nats://127.0.0.1:{port}")
    env["CONNECTOR_NAME"] = "nosuch.module:Thing"  # the feed refuses to start
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--log-dir",
            str(tmp_path / "logs"),
            "--ready-timeout-s",
            "10",
            "--keep-going",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        health_cli = _cli(env, "health", "--json")
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=15)
    finally:
        if up.poll() is None:
            up.kill()
    output = "".join(lines) + rest

    assert "connector_feed exited with code 1" in output
    assert "cannot import connector module" in output  # its own error line is shown
    assert up.returncode == 0
    assert health_cli.returncode == 1
    assert json.loads(health_cli.stdout)["connector_feed"]["status"] == "no reply"
