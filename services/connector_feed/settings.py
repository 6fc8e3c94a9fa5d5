"""connector_feed settings (environment / ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.common.settings import CommonSettings, ReconnectSettings

#: /fapi/v1/depth accepts only these limits; /api/v3/depth also takes 5000.
USDM_DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})
SPOT_DEPTH_LIMITS = USDM_DEPTH_LIMITS | {5000}


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
    binance_market: Literal["spot", "usdm"] = Field(
        default="spot", description="spot (exchange binance) or usdm (USD-M futures, exchange binance_usdm)"
    )
    binance_ws_url: str | None = Field(
        default=None,
        description="default: wss://stream.binance.com:9443 (spot), wss://fstream.binance.com (usdm)",
    )
    binance_rest_url: str | None = Field(
        default=None, description="default: https://api.binance.com (spot), https://fapi.binance.com (usdm)"
    )
    binance_trade_stream: Literal["trade", "aggTrade"] | None = Field(
        default=None, description="default: trade (spot, every fill), aggTrade (usdm)"
    )
    binance_depth_stream: Literal["diff", "partial5", "partial10", "partial20"] = Field(
        default="diff", description="diff: local order book from @depth@100ms; partialN: top-N snapshots"
    )
    binance_depth_limit: int = Field(default=1000, description="levels per side of the REST snapshot")
    binance_max_streams_per_connection: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="default: 1024 (spot), 200 (usdm); more streams open more connections",
    )
    binance_rotate_after_s: float = Field(
        default=23 * 3600.0,
        gt=0,
        description="replace each connection (make-before-break) before Binance's 24 h cut",
    )
    binance_stale_depth_s: float = Field(
        default=5.0, gt=0, description="a depth stream silent this long is stale"
    )
    binance_stale_trades_s: float = Field(
        default=60.0, gt=0, description="a trade stream silent this long is stale"
    )
    binance_ping_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="no pong / no frame for this long closes the connection (then reconnect)",
    )
    record_dir: Path | None = Field(
        default=None,
        description="record raw Binance frames and snapshots here (<exchange>/<SYMBOL>_<YYYYMMDD>.gz)",
    )
    replay_path: Path | None = Field(
        default=None, description="CONNECTOR_NAME=replay: a recording, or a folder"
    )
    replay_speed: float = Field(
        default=1.0, ge=0, description="replay pace: 1 = as recorded, 10 = 10x, 0 = flat out"
    )

    @field_validator("binance_depth_limit")
    @classmethod
    def _depth_limit(cls, value: int) -> int:
        if value not in SPOT_DEPTH_LIMITS:
            raise ValueError(f"must be one of {sorted(SPOT_DEPTH_LIMITS)}")
        return value

    @model_validator(mode="after")
    def _usdm_depth_limit(self) -> FeedSettings:
        if self.binance_market == "usdm" and self.binance_depth_limit not in USDM_DEPTH_LIMITS:
            raise ValueError(
                f"BINANCE_DEPTH_LIMIT={self.binance_depth_limit} is not a USD-M limit "
                f"({sorted(USDM_DEPTH_LIMITS)})"
            )
        return self

    stub_start_price: str = Field(
        default="50000.00", pattern=r"^[0-9]+\.[0-9]{2}$", description="first stub price"
    )
