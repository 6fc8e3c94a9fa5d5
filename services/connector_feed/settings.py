"""connector_feed settings (environment / ``.env``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import CommonSettings, ReconnectSettings


class FeedSettings(CommonSettings, ReconnectSettings):
    data_source: Literal["binance_ws", "hft_connector"] = Field(
        default="binance_ws", description="binance_ws (live Binance) or hft_connector (CONNECTOR_NAME)"
    )
    connector_name: str = Field(
        default="stub", description="built-in connector (stub) or package.module:ClassName"
    )
    connector_poll_interval_ms: float = Field(
        default=10.0, gt=0, le=60_000, description="wait before polling again when next_event returns None"
    )
    connector_paper_trading: bool = Field(default=True, description="passed to connectors that trade")
    max_queue: int = Field(default=10_000, ge=2, description="events buffered between connector and NATS")
    stub_trades_per_s: float = Field(
        default=20.0, ge=0, description="stub trade rate per symbol; 0 = unthrottled"
    )
    stub_depth_per_s: float = Field(
        default=5.0, ge=0, description="stub depth rate per symbol; 0 = unthrottled"
    )
    stub_seed: int | None = Field(default=None, description="same seed, same stream; unset = random")
    stub_start_price: str = Field(
        default="50000.00", pattern=r"^[0-9]+\.[0-9]{2}$", description="first stub price"
    )
