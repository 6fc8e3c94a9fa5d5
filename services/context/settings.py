"""context settings (environment / ``.env``)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class ContextSettings(CommonSettings):
    context_history_trades: int = Field(
        default=100, ge=1, le=100_000, description="last N trades kept per symbol"
    )
    context_vwap_window_s: float = Field(default=60.0, gt=0, description="VWAP window (event time)")
