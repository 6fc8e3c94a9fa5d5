"""Credentials never leave their setting: not in logs, health, ``$SRV.INFO``/``STATS``, error messages,
the settings' repr, nor ``hftfeed up``'s output. Against a real nats-server with users identified by
password, nkey and token, and the stack's permissions (deploy/nats/permissions.conf)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nkeys
import orjson
import pytest
from pydantic import SecretStr

from schemas import subjects
from services.common.bus import Bus, BusConnectError
from services.common.natsauth import NatsSecurity
from services.common.natsserver import NatsServer
from services.common.settings import CommonSettings, SettingsError, load_settings
from tests.micro import gather
from tests.secure_nats import SERVICES, password_config, password_security, token_config

ROOT = Path(__file__).parent.parent


def _secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


@dataclass
class PasswordNats:
    server: NatsServer
    passwords: dict[str, str]
    seed_file: Path
    seed: str

    def secrets(self) -> list[str]:
        return [*self.passwords.values(), self.seed, str(self.seed_file)]


@pytest.fixture(scope="module")
def password_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordNats]:
    """connector_feed, strategy_engine and reader by password; context by nkey."""
    directory = tmp_path_factory.mktemp("password-nats")
    passwords = {name: _secret(name) for name in ("connector_feed", "strategy_engine", "reader")}
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = directory / "context.nk"
    seed_file.write_bytes(seed)
    config = password_config(directory, passwords, {"context": public})
    with NatsServer(config=config) as server:
        yield PasswordNats(server, passwords, seed_file, seed.decode())


@pytest.fixture(scope="module")
def token_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str]]:
    token = _secret("token")
    with NatsServer(config=token_config(tmp_path_factory.mktemp("token-nats"), token)) as server:
        yield server, token


@pytest.mark.parametrize("how", ["password", "url-password", "token", "url-token"])
async def test_a_refused_credential_is_reported_at_once_and_never_echoed(
    password_nats: PasswordNats, token_nats: tuple[NatsServer, str], how: str
) -> None:
    wrong = _secret("wrong")
    address = password_nats.server.url.removeprefix("nats://")
    token_address = token_nats[0].url.removeprefix("nats://")
    url, security = {
        "password": (password_nats.server.url, password_security("strategy_engine", wrong)),
        "url-password": (f"nats://strategy_engine:{wrong}@{address}", NatsSecurity()),
        "token": (token_nats[0].url, NatsSecurity(token=SecretStr(wrong))),
        "url-token": (f"nats://{wrong}@{token_address}", NatsSecurity()),
    }[how]
    started = time.monotonic()

    with pytest.raises(BusConnectError) as refused:
        await Bus.connect(url, "strategy_engine", 5.0, security)

    message = str(refused.value)
    assert wrong not in message
    assert "authorization violation" in message
    assert ("***@" in message) == how.startswith("url")
    assert time.monotonic() - started < 2.0


async def test_the_right_credentials_connect_each_way(
    password_nats: PasswordNats, token_nats: tuple[NatsServer, str]
) -> None:
    address = password_nats.server.url.removeprefix("nats://")
    password = password_nats.passwords["strategy_engine"]
    ways = [
        (password_nats.server.url, password_security("strategy_engine", password)),
        (f"nats://strategy_engine:{password}@{address}", NatsSecurity(inbox_prefix="_INBOX.strategy_engine")),
        (password_nats.server.url, NatsSecurity(nkey_seed_file=password_nats.seed_file)),
        (token_nats[0].url, NatsSecurity(token=SecretStr(token_nats[1]))),
    ]

    connected = []
    for url, security in ways:
        bus = await Bus.connect(url, "test", 3.0, security)
        connected.append(bus.is_connected)
        await bus.drain()

    assert connected == [True] * 4


def test_settings_never_show_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "secret-name.creds"
    creds.write_text("x")
    with_url = CommonSettings(nats_url="nats://feed:url-pass-123@h1:4222,nats://tok-456@h2:4222")
    with_creds = CommonSettings(nats_creds=creds)
    with_password = CommonSettings(nats_user="u", nats_password=SecretStr("pw-789"))
    every = (with_url, with_creds, with_password)

    shown = "".join(f"{s!r}{s}{s.nats_security()!r}" for s in every)

    assert "nats://***@h1:4222,nats://***@h2:4222" in shown
    for secret in ("url-pass-123", "tok-456", "secret-name", "pw-789"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("variables", "secret"),
    [
        ({"NATS_URL": "http://u:pass-1@h:4222"}, "pass-1"),
        ({"NATS_URL": "nats://u:pass-2@h:4222", "NATS_TOKEN": "tok-2"}, "pass-2"),
        ({"NATS_CREDS": "/no/such/secret-3.creds"}, "secret-3"),
        ({"NATS_NKEY_SEED": "/no/such/secret-4.nk"}, "secret-4"),
    ],
    ids=["bad-scheme", "two-ways", "creds-missing", "seed-missing"],
)
def test_invalid_settings_are_named_without_their_secrets(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], secret: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as invalid:
        load_settings(CommonSettings)

    assert secret not in str(invalid.value)
    assert any(name in str(invalid.value) for name in variables)


def _env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATA_SOURCE", "CONNECTOR_"))}
    return {**env, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "DEBUG", "OTEL_SDK_DISABLED": "true", **variables}


async def test_services_never_log_or_report_their_credentials(
    password_nats: PasswordNats, tmp_path: Path
) -> None:
    address = password_nats.server.url.removeprefix("nats://")
    pw = password_nats.passwords
    environments = {
        "connector_feed": _env(
            NATS_URL=f"nats://connector_feed:{pw['connector_feed']}@{address}",
            DATA_SOURCE="hft_connector",
            CONNECTOR_NAME="stub",
        ),
        "strategy_engine": _env(
            NATS_URL=password_nats.server.url,
            NATS_USER="strategy_engine",
            NATS_PASSWORD=pw["strategy_engine"],
        ),
        "context": _env(NATS_URL=password_nats.server.url, NATS_NKEY_SEED=str(password_nats.seed_file)),
    }
    logs = {name: tmp_path / f"{name}.log" for name in SERVICES}
    processes = {}
    for name in SERVICES:
        with logs[name].open("wb") as log:
            processes[name] = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", f"services.{name}"],
                env={**environments[name], "NATS_INBOX_PREFIX": f"_INBOX.{name}"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    reader = await Bus.connect(
        password_nats.server.url, "reader", 3.0, password_security("reader", pw["reader"])
    )
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while len(health) < len(SERVICES):
            assert time.monotonic() < deadline, {n: p.read_text()[-2000:] for n, p in logs.items()}
            for name in set(SERVICES) - set(health):
                try:
                    health[name] = orjson.loads(
                        (await reader.request(subjects.health(name), timeout_s=0.5)).data
                    )
                except Exception:  # not up yet
                    await asyncio.sleep(0.1)
        discovery = [await gather(reader.nc, f"$SRV.{verb}") for verb in ("INFO", "STATS", "PING")]
        await reader.drain()
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(10)
    log_text = {name: path.read_text() for name, path in logs.items()}
    everything = orjson.dumps([health, discovery]).decode() + "".join(log_text.values())

    assert all(process.returncode == 0 for process in processes.values()), log_text
    assert {h["permission_violations"] for h in health.values()} == {0}  # type: ignore[index]
    assert sum(len(replies) for replies in discovery) == 3 * len(SERVICES)
    for secret in password_nats.secrets():
        assert secret not in everything
    connected = {
        name: [orjson.loads(line) for line in text.splitlines() if '"nats_connected"' in line]
        for name, text in log_text.items()
    }
    assert {name: lines[0]["auth"] for name, lines in connected.items()} == {
        "connector_feed": "url",
        "strategy_engine": "user",
        "context": "nkey",
    }


@pytest.mark.parametrize("how", ["NATS_PASSWORD", "NATS_URL"])
def test_a_service_refused_by_nats_exits_without_echoing_the_credential(
    password_nats: PasswordNats, how: str
) -> None:
    wrong = _secret("wrong")
    address = password_nats.server.url.removeprefix("nats://")
    variables = (
        {"NATS_URL": password_nats.server.url, "NATS_USER": "strategy_engine", "NATS_PASSWORD": wrong}
        if how == "NATS_PASSWORD"
        else {"NATS_URL": f"nats://strategy_engine:{wrong}@{address}"}
    )

    result = subprocess.run(
        [sys.executable, "-m", "services.strategy_engine"],
        env=_env(**variables),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "authorization violation" in result.stderr
    assert wrong not in result.stdout + result.stderr


async def test_hftfeed_up_never_prints_credentials(
    token_nats: tuple[NatsServer, str], tmp_path: Path
) -> None:
    server, token = token_nats
    url = f"nats://{token}@{server.url.removeprefix('nats://')}"
    out_path = tmp_path / "up.out"
    with out_path.open("wb") as out:
        up = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "services.cli", "up", "--log-dir", str(tmp_path / "logs")],
            env=_env(NATS_URL=url, STUB_TRADES_PER_S="20"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while "stack is up" not in out_path.read_text():
            assert up.poll() is None and time.monotonic() < deadline, out_path.read_text()
            await asyncio.sleep(0.1)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(15)
    output = out_path.read_text()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))

    assert up.returncode == 0, output
    assert "using the NATS server already at nats://***@127.0.0.1" in output
    assert token not in output + logs
    assert logs.count('"nats_connected"') == 3
