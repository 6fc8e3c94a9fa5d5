"""The Binance connector's own settings section (``BINANCE_*``, ``SYMBOLS``, ``RECORD_DIR``).

Loaded by the factory only when ``DATA_SOURCE=binance_ws`` (or by the replay), so the connector
never sees the feed's other settings; a bad value stops start-up naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.settings import parse_symbols

#: /fapi/v1/depth accepts only these limits; /api/v3/depth also takes 5000.
USDM_DEPTH_LIMITS = frozenset({5, 10, 20, 50, 100, 500, 1000})
SPOT_DEPTH_LIMITS = USDM_DEPTH_LIMITS | {5000}


class BinanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT"], description="comma-separated Binance symbols (any case)"
    )
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
        default=5.0,
        gt=0,
        description="a depth stream silent this long is stale, and its connection replaced make-before-break",
    )
    binance_stale_trades_s: float = Field(
        default=60.0,
        gt=0,
        description="a trade stream silent this long is stale, and resubscribed (trades may be rare)",
    )
    binance_half_open_s: float = Field(
        default=3.0,
        gt=0,
        description="a connection carrying depth (a 100 ms heartbeat) with no frame for this long is "
        "half-open and replaced; trade-only connections are pinged after 1.5 s of silence and closed "
        "without a pong within 1.5 s",
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

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        return parse_symbols(value)

    @field_validator("binance_depth_limit")
    @classmethod
    def _depth_limit(cls, value: int) -> int:
        if value not in SPOT_DEPTH_LIMITS:
            raise ValueError(f"must be one of {sorted(SPOT_DEPTH_LIMITS)}")
        return value

    @model_validator(mode="after")
    def _usdm_depth_limit(self) -> BinanceSettings:
        if self.binance_market == "usdm" and self.binance_depth_limit not in USDM_DEPTH_LIMITS:
            raise ValueError(
                f"BINANCE_DEPTH_LIMIT={self.binance_depth_limit} is not a USD-M limit "
                f"({sorted(USDM_DEPTH_LIMITS)})"
            )
        return self
