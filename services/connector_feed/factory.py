"""Choose the connector from settings: DATA_SOURCE, then CONNECTOR_NAME.

Native connectors plug in as they are; a seed-style ``ConnectorWrapper`` is run by
``PollingConnector`` (reconnect policy, CONNECTOR_POLL_INTERVAL_MS). ``FeedSettings`` has already
refused an unknown CONNECTOR_NAME, a missing one, and CONNECTOR_PAPER_TRADING=false.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from pydantic_settings import BaseSettings

from services.common.lifecycle import FatalError
from services.common.reconnect import Reconnector, ReconnectPolicy
from services.common.settings import SettingsError, load_settings
from services.connector_feed.connector import ConnectorWrapper, NativeConnector, import_connector_class
from services.connector_feed.polling import PollingConnector
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubbedConnector

S = TypeVar("S", bound=BaseSettings)


def _section(cls: type[S]) -> S:
    """A connector's own settings section, loaded from the environment (clear error otherwise)."""
    try:
        return load_settings(cls)
    except SettingsError as error:
        raise FatalError(str(error)) from None


def reconnect_policy(settings: FeedSettings) -> ReconnectPolicy:
    """The shared policy; for Binance (binance_ws, binance_hft), jitter on and unlimited attempts unless
    RECONNECT_* say otherwise
    (a venue outage must not end the feed: it reports ``down`` and keeps trying)."""
    policy = ReconnectPolicy.from_settings(settings)
    if settings.data_source != "binance_ws" and settings.connector_name != "binance_hft":
        return policy
    chosen = settings.model_fields_set
    return replace(
        policy,
        jitter=policy.jitter if "reconnect_jitter" in chosen else True,
        max_attempts=policy.max_attempts if "reconnect_max_attempts" in chosen else 0,
    )


def build_connector(settings: FeedSettings) -> tuple[NativeConnector, str]:
    """The connector, ready for the feed, and a short label for logs; ``FatalError`` with a clear message."""
    connector, label = _build(settings)
    if isinstance(connector, NativeConnector):
        return connector, label
    polling = PollingConnector(
        connector,
        settings.symbols,
        Reconnector(reconnect_policy(settings)),
        settings.connector_poll_interval_ms / 1000,
        label,
    )
    return polling, label


def _build(settings: FeedSettings) -> tuple[ConnectorWrapper | NativeConnector, str]:
    if settings.data_source == "binance_ws":
        from services.connector_feed.binance.connector import BinanceConnector
        from services.connector_feed.binance.settings import BinanceSettings

        binance = _section(BinanceSettings)
        return BinanceConnector(binance, reconnect_policy(settings)), f"binance_{binance.binance_market}"
    name = settings.connector_name
    if name is None:  # FeedSettings refuses it; a settings object built without validation
        raise FatalError("CONNECTOR_NAME is required with DATA_SOURCE=hft_connector")
    if name == "binance_hft":
        from services.connector_feed.binance.hft import BinanceHFTConnector
        from services.connector_feed.binance.settings import BinanceSettings

        return (
            BinanceHFTConnector(
                _section(BinanceSettings),
                reconnect_policy(settings),
                settings.max_queue,
                paper_trading=settings.connector_paper_trading,
            ),
            "binance_hft",
        )
    if name == "replay":
        from services.connector_feed.binance.replay import ReplayConnector, ReplaySettings

        try:
            return ReplayConnector(_section(ReplaySettings)), "replay"
        except ValueError as error:
            raise FatalError(str(error)) from None
    if name == "hftbacktest":
        from services.connector_feed.hftbacktest.connector import HftbacktestReplayConnector
        from services.connector_feed.hftbacktest.format import HbtDataError
        from services.connector_feed.hftbacktest.settings import HbtReplaySettings

        try:
            return HftbacktestReplayConnector(load_settings(HbtReplaySettings)), "hftbacktest"
        except (SettingsError, HbtDataError) as error:
            raise FatalError(f"CONNECTOR_NAME=hftbacktest: {error}") from None
    if name == "stub":
        from services.connector_feed.stub import StubSettings

        return StubbedConnector(_section(StubSettings)), "stub"
    try:
        cls = import_connector_class(name)
    except ValueError as error:
        raise FatalError(f"CONNECTOR_NAME={name}: {error}") from None
    try:
        return cls(settings), name  # type: ignore[call-arg]
    except Exception as error:  # a user connector's constructor: report, don't traceback
        raise FatalError(f"CONNECTOR_NAME={name}: could not create the connector: {error!r}") from error
