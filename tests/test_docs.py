"""The README stays true: every setting is documented (the README's table, or docs/security.md's for
the NATS identity and TLS settings), and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.common.telemetry import TelemetrySettings
from services.connector_feed.settings import FeedSettings
from services.context.settings import ContextSettings
from services.strategy_engine.settings import StrategySettings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SECURITY = (ROOT / "docs" / "security.md").read_text()


@pytest.mark.parametrize("settings", [FeedSettings, StrategySettings, ContextSettings, TelemetrySettings])
def test_every_setting_is_in_the_readme_table(settings: type[BaseSettings]) -> None:
    missing = [name.upper() for name in settings.model_fields if f"`{name.upper()}`" not in README + SECURITY]

    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)
    test_command = next(c for c in commands if "pytest" in c)

    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
