"""docker-compose.yml serves the feed's HTTP endpoints (HTTP_PORT) on the host's loopback: the port
the feed listens on is the one published, it listens on every interface inside its container (or
the published port would reach nothing), and the healthcheck stays on NATS. Checked offline, and
the checker is shown to reject each way of getting it wrong."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.test_compose import (
    ALL_INTERFACES,
    COMPOSE_FILE,
    INTERPOLATED,
    environment,
    healthcheck_words,
    load_compose,
    run_compose,
)

FEED = "connector_feed"


def feed_http_problems(compose: Mapping[str, Any]) -> list[str]:
    """[] when the feed's HTTP port is configured, reachable and published on loopback only."""
    feed = (compose.get("services") or {}).get(FEED) or {}
    env = environment(feed)
    port = env.get("HTTP_PORT")
    if not port or not port.isdigit():
        return [f"{FEED}: HTTP_PORT is not set to a port"]
    problems = []
    if env.get("HTTP_HOST", "127.0.0.1") not in ALL_INTERFACES:
        problems.append(
            f"{FEED}: HTTP_HOST must be all interfaces in the container, not {env.get('HTTP_HOST')!r}"
        )
    published = [str(p).split(":") for p in feed.get("ports") or [] if not isinstance(p, Mapping)]
    published += [
        [str(p.get("host_ip", "")), str(p.get("published", "")), str(p.get("target", ""))]
        for p in feed.get("ports") or []
        if isinstance(p, Mapping)
    ]
    targets = {parts[-1].split("/")[0]: parts for parts in published}
    if port not in targets:
        problems.append(f"{FEED}: HTTP_PORT {port} is not published")
    elif len(targets[port]) != 3 or targets[port][0] not in ("127.0.0.1", "::1"):
        problems.append(f"{FEED}: HTTP port {port} must be published on 127.0.0.1 only")
    if "health" not in healthcheck_words(feed):
        problems.append(f"{FEED}: the healthcheck should ask over NATS (hftfeed health)")
    return problems


def test_the_feed_serves_http_on_loopback() -> None:
    assert feed_http_problems(load_compose()) == []


def test_compose_resolves_the_feeds_http_port(tmp_path: Path) -> None:
    result = run_compose(
        COMPOSE_FILE, tmp_path, "config", "--format", "json", env=dict.fromkeys(INTERPOLATED, "")
    )

    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    feed = services[FEED]
    assert (feed["environment"]["HTTP_PORT"], feed["environment"]["HTTP_HOST"]) == ("8000", "0.0.0.0")
    assert [(p["host_ip"], p["published"], p["target"]) for p in feed["ports"]] == [
        ("127.0.0.1", "8000", 8000)
    ]
    assert all("HTTP_PORT" not in services[name]["environment"] for name in ("strategy_engine", "context"))


def _feed(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        change(compose["services"][FEED])

    return mutate


@pytest.mark.parametrize(
    ("mutation", "complaint"),
    [
        pytest.param(
            _feed(lambda f: f["environment"].pop("HTTP_PORT")), "HTTP_PORT is not set", id="no-port"
        ),
        pytest.param(
            _feed(lambda f: f["environment"].update(HTTP_HOST="127.0.0.1")),
            "HTTP_HOST must be all interfaces",
            id="container-loopback",
        ),
        pytest.param(
            _feed(lambda f: f.update(ports=["127.0.0.1:8000:8001"])), "is not published", id="other-port"
        ),
        pytest.param(_feed(lambda f: f.update(ports=["8000:8000"])), "127.0.0.1 only", id="every-interface"),
        pytest.param(
            _feed(lambda f: f.update(ports=[{"target": 8000, "published": "8000", "host_ip": "0.0.0.0"}])),
            "127.0.0.1 only",
            id="long-syntax-every-interface",
        ),
        pytest.param(
            _feed(
                lambda f: f["healthcheck"].update(test=["CMD", "curl", "-f", "http://127.0.0.1:8000/readyz"])
            ),
            "over NATS",
            id="http-healthcheck",
        ),
    ],
)
def test_http_problems_are_reported(mutation: Callable[[dict[str, Any]], None], complaint: str) -> None:
    compose = load_compose()
    mutation(compose)

    problems = feed_http_problems(compose)

    assert any(complaint in problem for problem in problems), problems
