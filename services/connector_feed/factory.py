"""Choose the connector from settings: DATA_SOURCE, then CONNECTOR_NAME."""

from __future__ import annotations

from services.common.lifecycle import FatalError
from services.common.settings import SettingsError, load_settings
from services.connector_feed.connector import ConnectorWrapper, import_connector_class
from services.connector_feed.settings import FeedSettings
from services.connector_feed.stub import StubbedConnector

BUILT_IN: dict[str, type[ConnectorWrapper]] = {"stub": StubbedConnector}


def build_connector(settings: FeedSettings) -> tuple[ConnectorWrapper, str]:
    """The connector instance and a short label for logs; ``FatalError`` with a clear message."""
    if settings.data_source == "binance_ws":
        from services.connector_feed.binance.connector import BinanceConnector

        return BinanceConnector(settings), f"binance_{settings.binance_market}"
    name = settings.connector_name
    if name == "replay":
        from services.connector_feed.binance.replay import ReplayConnector

        try:
            return ReplayConnector(settings), "replay"
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
    cls = BUILT_IN.get(name)
    if cls is None:
        try:
            cls = import_connector_class(name)
        except ValueError as error:
            raise FatalError(f"CONNECTOR_NAME={name}: {error}") from None
    try:
        return cls(settings), name  # type: ignore[call-arg]
    except Exception as error:  # a user connector's constructor: report, don't traceback
        raise FatalError(f"CONNECTOR_NAME={name}: could not create the connector: {error!r}") from error
