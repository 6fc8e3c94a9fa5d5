"""strategy_engine settings (environment / ``.env``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.common.settings import CommonSettings


class StrategySettings(CommonSettings):
    strategies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["vwap"],
        description="built-in names or package.module:ClassName, comma-separated",
    )
    strategy_queue_size: int = Field(default=10_000, ge=1, description="events buffered per strategy")
    strategy_max_block_ms: float = Field(
        default=50.0,
        gt=0,
        description="a strategy hook running longer than this is reported by name in health (degraded)",
    )
    vwap_window_s: float = Field(default=60.0, gt=0, description="VWAP window (event time)")
    vwap_threshold_bps: float = Field(default=10.0, gt=0, description="deviation from VWAP that signals")
    vwap_min_trades: int = Field(default=20, ge=1, description="trades in the window before signalling")

    @field_validator("strategies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("strategies")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one strategy is required")
        return value
