"""connector_feed settings (environment / ``.env``): the feed's own; each connector reads its own
section (``binance.settings.BinanceSettings``, ``stub.StubSettings``, ``binance.replay.ReplaySettings``,
``hftbacktest.settings.HbtReplaySettings``) when it is the one chosen."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import CommonSettings, ReconnectSettings


class FeedSettings(CommonSettings, ReconnectSettings):
    data_source: Literal["binance_ws", "hft_connector"] = Field(
        default="binance_ws",
        description="binance_ws (live Binance, BINANCE_*) or hft_connector (CONNECTOR_NAME). `hftfeed up` "
        "runs the stub unless DATA_SOURCE or BINANCE_MARKET is set; docker compose runs binance_ws",
    )
    connector_name: str = Field(
        default="stub", description="built-in connector (stub) or package.module:ClassName"
    )
    connector_poll_interval_ms: float = Field(
        default=10.0,
        gt=0,
        le=60_000,
        description="polling connectors only (ConnectorWrapper): wait before asking again when next_event "
        "returns None",
    )
    connector_paper_trading: bool = Field(default=True, description="passed to connectors that trade")
    max_queue: int = Field(
        default=10_000,
        ge=2,
        description="events queued for NATS before the connector is made to wait (backpressure)",
    )
    md_snapshot_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="publish every synced book as a snapshot on md.<SYMBOL>.depth this often (0 = off): "
        "plain subscribers get a whole book within this time without request/reply",
    )
