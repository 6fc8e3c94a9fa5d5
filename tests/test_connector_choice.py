"""Choosing the connector: CONNECTOR_NAME is required with DATA_SOURCE=hft_connector, checked against
the built-in names, and CONNECTOR_PAPER_TRADING=false is refused - in the settings, and at start-up
(exit 2 and one line naming the variable, before anything is published)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.lifecycle import FatalError
from services.common.settings import SettingsError, load_settings
from services.connector_feed.factory import build_connector
from services.connector_feed.settings import BUILT_IN_CONNECTORS, FeedSettings

ROOT = Path(__file__).resolve().parent.parent
VALID = ("binance_hft", "hftbacktest", "replay", "stub")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DATA_SOURCE", "CONNECTOR_", "BINANCE_", "REPLAY_", "HBT_", "STUB_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def _refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings(FeedSettings)
    return str(error.value)


@pytest.mark.parametrize("name", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_hft_connector_without_a_name_is_refused_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, name: str | None
) -> None:
    if name is not None:
        monkeypatch.setenv("CONNECTOR_NAME", name)

    message = _refusal(monkeypatch, DATA_SOURCE="hft_connector")

    assert "CONNECTOR_NAME: Value error, required with DATA_SOURCE=hft_connector" in message
    assert all(valid in message for valid in VALID) and "stub (synthetic data)" in message
    assert "leave DATA_SOURCE unset for live Binance" in message
    if name is None:
        assert "(got" not in message  # nothing was given: no "(got None)"


@pytest.mark.parametrize("name", ["kraken", "binance", "Stub", "module_without_class:", ":Class"])
def test_an_unknown_connector_name_is_refused_with_the_valid_names(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    message = _refusal(monkeypatch, DATA_SOURCE="hft_connector", CONNECTOR_NAME=name)

    assert f"CONNECTOR_NAME: Value error, unknown connector {name!r}" in message
    assert "valid names are binance_hft, hftbacktest, replay, stub, or package.module:ClassName" in message


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_paper_trading_off_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = _refusal(
        monkeypatch, DATA_SOURCE="hft_connector", CONNECTOR_NAME="binance_hft", CONNECTOR_PAPER_TRADING=value
    )

    assert "CONNECTOR_PAPER_TRADING: Value error, false is refused: this feed is market data only" in message


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("true", True), ("1", True)])
def test_paper_trading_on_is_the_default_and_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
    if value is not None:
        monkeypatch.setenv("CONNECTOR_PAPER_TRADING", value)

    settings = load_settings(FeedSettings)

    assert (settings.connector_name, settings.connector_paper_trading) == ("binance_hft", expected)


def test_binance_ws_needs_no_connector_name(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(FeedSettings)

    assert (settings.data_source, settings.connector_name) == ("binance_ws", None)


def test_the_seed_guides_dotenv_example_loads_as_written() -> None:
    Path(".env").write_text(
        "# Data source selection (default: binance_ws)\n"
        "DATA_SOURCE=hft_connector\n\n"
        "# Connector-specific settings (used when DATA_SOURCE=hft_connector)\n"
        "CONNECTOR_NAME=binance_hft\n"
        "CONNECTOR_POLL_INTERVAL_MS=100\n"
        "CONNECTOR_PAPER_TRADING=true\n"
    )

    settings = load_settings(FeedSettings)
    connector, label = build_connector(settings)

    assert (settings.data_source, settings.connector_name, settings.connector_poll_interval_ms) == (
        "hft_connector",
        "binance_hft",
        100,
    )
    assert (label, connector.exchange, connector.instruments()) == ("binance_hft", "binance", ["BTCUSDT"])


def _build(monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", name)
    return build_connector(load_settings(FeedSettings))[1]


def test_every_built_in_name_is_one_the_factory_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    built = [_build(monkeypatch, name) for name in ("binance_hft", "stub")]

    for replay in ("hftbacktest", "replay"):  # they need their files: their own settings say so
        with pytest.raises(FatalError, match="REPLAY_PATH"):
            _build(monkeypatch, replay)
    assert built == ["binance_hft", "stub"]
    assert tuple(sorted(BUILT_IN_CONNECTORS)) == VALID


# ---- at start-up: the process --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"DATA_SOURCE": "hft_connector"},
            "  CONNECTOR_NAME: Value error, required with DATA_SOURCE=hft_connector: binance_hft (",
            id="no-name",
        ),
        pytest.param(
            {"DATA_SOURCE": "hft_connector", "CONNECTOR_NAME": "kraken"},
            "  CONNECTOR_NAME: Value error, unknown connector 'kraken': valid names are binance_hft, "
            "hftbacktest, replay, stub, or package.module:ClassName for a connector of your own "
            "(got 'kraken')",
            id="unknown-name",
        ),
        pytest.param(
            {
                "DATA_SOURCE": "hft_connector",
                "CONNECTOR_NAME": "binance_hft",
                "CONNECTOR_PAPER_TRADING": "false",
            },
            "  CONNECTOR_PAPER_TRADING: Value error, false is refused: this feed is market data only and "
            "nothing in it routes orders (leave it unset or true) (got 'false')",
            id="paper-trading-off",
        ),
    ],
)
def test_the_feed_process_refuses_at_start_up(nats_url: str, env: dict[str, str], line: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_SOURCE", "CONNECTOR_"))}

    done = subprocess.run(
        [sys.executable, "-m", "services.connector_feed"],
        env={**clean, "NATS_URL": nats_url, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "connector_feed: invalid settings:"
    assert any(candidate.startswith(line) for candidate in lines[1:]), done.stderr
    assert done.stdout == ""  # refused before connecting: nothing logged, nothing published


def test_hftfeed_up_refuses_before_starting_anything(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_SOURCE", "CONNECTOR_"))}

    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--log-dir", str(tmp_path / "logs")],
        env={**clean, "PYTHONPATH": str(ROOT), "DATA_SOURCE": "hft_connector"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )

    assert done.returncode == 2
    assert "CONNECTOR_NAME: Value error, required with DATA_SOURCE=hft_connector" in done.stderr
    assert not (tmp_path / "logs").exists()  # no server, no service was started
