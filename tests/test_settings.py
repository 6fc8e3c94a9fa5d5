from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

from services.common.settings import SettingsError, load_settings
from services.connector_feed.binance.settings import BinanceSettings
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in (
        "DATA_SOURCE",
        "CONNECTOR_NAME",
        "SYMBOLS",
        "MAX_QUEUE",
        "NATS_URL",
        "STUB_SEED",
        "CONNECTOR_POLL_INTERVAL_MS",
        "CONNECTOR_PAPER_TRADING",
        "RECONNECT_MAX_ATTEMPTS",
        "LOG_LEVEL",
        "BINANCE_MARKET",
        "BINANCE_DEPTH_LIMIT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]  # no stray .env


def test_defaults() -> None:
    settings = load_settings(FeedSettings)

    assert settings.data_source == "binance_ws"
    assert settings.symbols == ["BTCUSDT"]
    assert settings.nats_url == "nats://127.0.0.1:4222"
    stub = load_settings(StubSettings)
    assert (stub.stub_trades_per_s, stub.stub_depth_per_s, stub.stub_seed) == (20, 5, None)
    assert (settings.reconnect_initial_s, settings.reconnect_max_s, settings.reconnect_max_attempts) == (
        0.5,
        8,
        5,
    )
    assert settings.reconnect_jitter is False


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", "stub")
    monkeypatch.setenv("SYMBOLS", " BTCUSDT, ETHUSDT-PERP ")
    monkeypatch.setenv("MAX_QUEUE", "50")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("CONNECTOR_PAPER_TRADING", "true")

    settings = load_settings(FeedSettings)

    assert settings.symbols == ["BTCUSDT", "ETHUSDT-PERP"]
    assert settings.max_queue == 50
    assert settings.log_level == "DEBUG"
    assert (settings.connector_name, settings.connector_paper_trading) == ("stub", True)


def test_dotenv_file_is_read(tmp_path: object) -> None:
    import pathlib

    pathlib.Path(".env").write_text("DATA_SOURCE=hft_connector\nCONNECTOR_NAME=stub\nSTUB_SEED=9\n")

    settings = load_settings(FeedSettings)

    assert (settings.data_source, load_settings(StubSettings).stub_seed) == ("hft_connector", 9)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATA_SOURCE", "kraken"),
        ("MAX_QUEUE", "lots"),
        ("MAX_QUEUE", "0"),
        ("SYMBOLS", "BTC.USDT"),
        ("SYMBOLS", ","),
        ("SYMBOLS", "A,A"),
        ("CONNECTOR_POLL_INTERVAL_MS", "-5"),
        ("RECONNECT_MAX_ATTEMPTS", "-1"),
        ("LOG_LEVEL", "chatty"),
        ("STUB_SEED", "x"),
        ("BINANCE_MARKET", "coinm"),
        ("BINANCE_DEPTH_LIMIT", "7"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    sections: dict[str, type[BaseSettings]] = {"STUB": StubSettings, "BINANCE": BinanceSettings}
    section = sections.get(variable.split("_")[0], FeedSettings)

    with pytest.raises(SettingsError) as error:
        load_settings(section)

    assert f"{variable}:" in str(error.value)


def test_binance_reconnect_defaults_jitter_and_never_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.connector_feed.factory import reconnect_policy

    monkeypatch.setenv("DATA_SOURCE", "binance_ws")
    binance = reconnect_policy(load_settings(FeedSettings))
    monkeypatch.setenv("RECONNECT_MAX_ATTEMPTS", "3")
    capped = reconnect_policy(load_settings(FeedSettings))
    monkeypatch.setenv("DATA_SOURCE", "hft_connector")
    monkeypatch.setenv("CONNECTOR_NAME", "stub")
    monkeypatch.delenv("RECONNECT_MAX_ATTEMPTS")
    stub = reconnect_policy(load_settings(FeedSettings))
    monkeypatch.setenv("CONNECTOR_NAME", "binance_hft")
    binance_hft = reconnect_policy(load_settings(FeedSettings))

    assert (binance.jitter, binance.max_attempts) == (True, 0)
    assert capped.max_attempts == 3  # an explicit setting wins
    assert (stub.jitter, stub.max_attempts) == (False, 5)
    assert (binance_hft.jitter, binance_hft.max_attempts) == (True, 0)  # Binance, whichever way


def test_usdm_refuses_a_spot_only_depth_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_MARKET", "usdm")
    monkeypatch.setenv("BINANCE_DEPTH_LIMIT", "5000")

    with pytest.raises(SettingsError, match="BINANCE_DEPTH_LIMIT=5000 is not a USD-M limit"):
        load_settings(BinanceSettings)


def test_binance_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_MARKET", "usdm")
    monkeypatch.setenv("BINANCE_DEPTH_LIMIT", "500")

    settings = load_settings(BinanceSettings)

    assert (settings.binance_market, settings.binance_depth_limit) == ("usdm", 500)


def test_symbols_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOLS", "btcusdt, ethusdt_250627")

    assert load_settings(FeedSettings).symbols == ["BTCUSDT", "ETHUSDT_250627"]
    assert load_settings(BinanceSettings).symbols == ["BTCUSDT", "ETHUSDT_250627"]
