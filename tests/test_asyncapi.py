"""schemas/asyncapi.json: generated from the contracts and subjects, in sync, and valid for AsyncAPI's
own parser (@asyncapi/parser, installed from npm into a cache on first use); its hand-written schemas
(health, errors) match what the running services answer."""

from __future__ import annotations

import asyncio
import copy
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from schemas import CONTRACTS, subjects
from schemas.__main__ import ASYNCAPI_FILE, render_asyncapi
from schemas.asyncapi import BOOK_TEMPLATE, asyncapi_document
from services.common.health import Status
from services.common.settings import CommonSettings
from tests.test_telemetry import _env, services

ROOT = Path(__file__).resolve().parent.parent
CHECK_SCRIPT = Path(__file__).with_name("asyncapi_check.js")
PARSER_PACKAGE = "@asyncapi/parser"
PARSER_VERSION = "3.6.3"
NPM_CACHE = Path(os.environ.get("HFTFEED_NPM_CACHE", Path.home() / ".cache" / "hftfeed-npm"))
ERROR, WARNING = 0, 1
TEMPLATES = {
    subjects.TRADES_TEMPLATE,
    subjects.DEPTH_TEMPLATE,
    subjects.STATUS_TEMPLATE,
    subjects.FEED_STATUS,
    BOOK_TEMPLATE,
    subjects.SIGNALS_TEMPLATE,
    subjects.CONTEXT_SNAPSHOT_TEMPLATE,
    subjects.HEALTH_TEMPLATE,
}


# --- the official parser, from npm --------------------------------------------------------------------


@pytest.fixture(scope="session")
def asyncapi_parser() -> Path:
    """The node_modules folder holding @asyncapi/parser, installed once into a cache (under a lock, so
    parallel runs share one install)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: the AsyncAPI document is not checked by @asyncapi/parser")
    prefix = NPM_CACHE / f"asyncapi-parser-{PARSER_VERSION}"
    prefix.mkdir(parents=True, exist_ok=True)
    installed = prefix / "node_modules" / "@asyncapi" / "parser" / "package.json"
    with (prefix / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed.is_file() or json.loads(installed.read_text())["version"] != PARSER_VERSION:
            started = time.monotonic()
            command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error"]
            result = subprocess.run(
                [*command, f"{PARSER_PACKAGE}@{PARSER_VERSION}"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                pytest.fail(f"npm install {PARSER_PACKAGE}@{PARSER_VERSION} failed:\n{result.stderr}")
            took = time.monotonic() - started
            print(f"installed {PARSER_PACKAGE}@{PARSER_VERSION} into {prefix} in {took:.1f}s")
    return prefix / "node_modules"


def parse(modules: Path, *documents: Path) -> list[dict[str, Any]]:
    """The parser's verdict on each document: {"document": parsed?, "diagnostics": [...]} (one node run)."""
    result = subprocess.run(
        ["node", str(CHECK_SCRIPT), str(modules), *map(str, documents)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts: list[dict[str, Any]] = json.loads(result.stdout)
    return verdicts


def serious(verdict: dict[str, Any]) -> list[str]:
    return [
        f"{d['code']} at {'/'.join(map(str, d['path']))}: {d['message']}"
        for d in verdict["diagnostics"]
        if d["severity"] in (ERROR, WARNING)
    ]


def test_the_document_passes_the_asyncapi_parser(asyncapi_parser: Path) -> None:
    (verdict,) = parse(asyncapi_parser, ASYNCAPI_FILE)

    assert serious(verdict) == []
    assert verdict["document"] is True


def _set(path: tuple[str, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


# A broken document -> the diagnostic code the parser must report for it.
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "dangling-channel": (
        _set(("operations", "publishTrades", "channel"), {"$ref": "#/channels/nope"}),
        "invalid-ref",
    ),
    "missing-schema-file": (
        _set(("components", "messages", "TradeTick", "payload"), {"$ref": "./json/nope.json"}),
        "invalid-ref",
    ),
    "bad-schema": (_set(("components", "schemas", "ServiceError", "type"), 42), "asyncapi-document-resolved"),
    "message-of-another-channel": (
        _set(
            ("operations", "publishTrades", "messages"), [{"$ref": "#/channels/depth/messages/depthUpdate"}]
        ),
        "asyncapi3-operation-messages-from-referred-channel",
    ),
}


@pytest.fixture(scope="module")
def broken_verdicts(asyncapi_parser: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The parser's verdict on each BROKEN document, each written beside a copy of schemas/json/."""
    folder = tmp_path_factory.mktemp("asyncapi")
    shutil.copytree(ASYNCAPI_FILE.parent / "json", folder / "json")
    paths = []
    for name, (mutate, _) in BROKEN.items():
        document = copy.deepcopy(asyncapi_document())
        mutate(document)
        paths.append(folder / f"{name}.json")
        paths[-1].write_text(render_asyncapi(document))
    return dict(zip(BROKEN, parse(asyncapi_parser, *paths), strict=True))


@pytest.mark.parametrize("name", list(BROKEN))
def test_the_parser_rejects_a_broken_document(broken_verdicts: dict[str, Any], name: str) -> None:
    verdict = broken_verdicts[name]

    problems = serious(verdict)

    assert any(BROKEN[name][1] in problem for problem in problems), verdict


# --- generated, and in sync -----------------------------------------------------------------------------


def test_the_asyncapi_file_matches_the_contracts() -> None:
    """Fails when a model or subject changes without `python -m schemas` being re-run."""
    generated = render_asyncapi(asyncapi_document())

    assert ASYNCAPI_FILE.read_text() == generated, "schemas/asyncapi.json drifted: run `python -m schemas`"


def test_every_subject_template_is_a_channel_with_its_parameters() -> None:
    channels = asyncapi_document()["channels"].values()

    addresses = {c["address"] for c in channels if c["address"] is not None}

    assert addresses == TEMPLATES
    for channel in channels:
        names = set(re.findall(r"\{(\w+)\}", channel["address"] or ""))
        assert set(channel.get("parameters", {})) == names, channel["address"]


def test_every_contract_is_a_payload_and_every_payload_file_exists() -> None:
    text = ASYNCAPI_FILE.read_text()

    referenced = set(re.findall(r'"\./json/(\w+)\.json"', text))

    assert referenced == set(CONTRACTS)
    assert all((ASYNCAPI_FILE.parent / "json" / f"{stem}.json").is_file() for stem in referenced)


def test_the_examples_are_valid_wire_messages() -> None:
    messages = asyncapi_document()["components"]["messages"]

    examples = {name: m["examples"][0]["payload"] for name, m in messages.items() if "examples" in m}

    assert set(examples) == {"TradeTick", "DepthUpdate", "Signal", "Status"}
    for name, payload in examples.items():
        stem = next(s for s, model in CONTRACTS.items() if model.__name__ == name)
        Draft202012Validator(
            json.loads((ASYNCAPI_FILE.parent / "json" / f"{stem}.json").read_text())
        ).validate(payload)
        assert CONTRACTS[stem].model_validate(payload).model_dump(mode="json") == payload


def test_the_local_server_is_the_default_nats_url() -> None:
    server = asyncapi_document()["servers"]["local"]

    assert f"nats://{server['host']}" == CommonSettings.model_fields["nats_url"].default


# --- the hand-written schemas against real replies ---------------------------------------------------


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(asyncapi_document()["components"]["schemas"][name])


def test_the_health_status_enum_is_the_services_one() -> None:
    status = asyncapi_document()["components"]["schemas"]["HealthReport"]["properties"]["status"]

    assert status["enum"] == list(get_args(Status))


async def _answered(nc: Client, subject: str, timeout_s: float = 10.0) -> Msg:
    """The reply to a request, asked again while nobody answers yet (the service is starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await nc.request(subject, b"", timeout=2)
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_real_health_and_error_replies_match_the_document(
    nats_url: str, unique: str, nc: Client
) -> None:
    with services(_env(nats_url, unique), names=("context",)):
        health = await _answered(nc, subjects.health("context"))
        error = await _answered(nc, subjects.context_snapshot("NO_SUCH_SYMBOL"))

    assert list(_schema("HealthReport").iter_errors(json.loads(health.data))) == []
    assert list(_schema("ServiceErrorHeaders").iter_errors(dict(error.headers or {}))) == []
    assert list(_schema("ServiceError").iter_errors(json.loads(error.data))) == []
    assert (error.headers or {})[ERROR_CODE_HEADER] == "404"
    assert "NO_SUCH_SYMBOL" in (error.headers or {})[ERROR_HEADER]
    assert list(_schema("HealthReport").iter_errors({"service": "x", "status": "fine"})) != []
