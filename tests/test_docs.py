"""The README stays true: every setting is documented (the README's table, or docs/security.md's for
the NATS identity and TLS settings, docs/operations.md's for the feed's HTTP port), and CI runs the
README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.cli.record_npz import RecordNpzSettings
from services.common.telemetry import TelemetrySettings
from services.connector_feed.binance.replay import ReplaySettings
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.hftbacktest.settings import HbtReplaySettings
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubSettings
from services.context.settings import ContextSettings
from services.strategy_engine.settings import StrategySettings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SECURITY = (ROOT / "docs" / "security.md").read_text()
HFTBACKTEST = (ROOT / "docs" / "hftbacktest.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()  # HTTP_PORT, HTTP_HOST
SECTIONS = [
    FeedSettings,
    BinanceSettings,
    StubSettings,
    ReplaySettings,
    HbtReplaySettings,
    RecordNpzSettings,
    StrategySettings,
    ContextSettings,
    TelemetrySettings,
]


@pytest.mark.parametrize("settings", SECTIONS)
def test_every_setting_is_in_the_readme_table(settings: type[BaseSettings]) -> None:
    documented = README + SECURITY + HFTBACKTEST + OPERATIONS
    missing = [name.upper() for name in settings.model_fields if f"`{name.upper()}`" not in documented]

    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)
    test_command = next(c for c in commands if "pytest" in c)

    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
