"""Settings of the hftbacktest replay (``CONNECTOR_NAME=hftbacktest``): their own class and section."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.subjects import check_token
from schemas.types import DECIMAL_PATTERN

#: A grid step as the user writes it: a plain positive number (``0.1``, ``0.001``, ``1``).
Step = Annotated[str, Field(pattern=DECIMAL_PATTERN)]


class HbtReplaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    replay_path: Path = Field(description="an hftbacktest .npz (or .npy) event file, or a folder of them")
    replay_speed: float = Field(
        default=1.0, ge=0, description="pace by local_ts: 1 = as recorded, 10 = 10x, 0 = flat out"
    )
    hbt_tick_size: Step = Field(description="the instrument's price step, e.g. 0.1 (required)")
    hbt_lot_size: Step = Field(description="the instrument's quantity step, e.g. 0.001 (required)")
    hbt_exchange: str = Field(
        default="hftbacktest",
        pattern=r"^[a-z0-9_]{1,32}$",
        description="exchange id published on every event, e.g. binance_usdm",
    )
    hbt_initial_snapshot: Path | None = Field(
        default=None, description="optional book to start from (an _eod.npz, hftbacktest's initial_snapshot)"
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        description="exactly one instrument id, as published on the bus (e.g. BTCUSDT-PERP)"
    )

    @field_validator("hbt_tick_size", "hbt_lot_size")
    @classmethod
    def _positive(cls, value: str) -> str:
        if not value.strip("0."):
            raise ValueError("must be > 0")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _one_symbol(cls, value: object) -> object:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(value, list) or len(value) != 1:
            raise ValueError("an hftbacktest file holds one instrument: give exactly one symbol")
        check_token(str(value[0]), "symbol")
        return value

    @property
    def tick_size(self) -> Decimal:
        return Decimal(self.hbt_tick_size)

    @property
    def lot_size(self) -> Decimal:
        return Decimal(self.hbt_lot_size)

    @property
    def symbol(self) -> str:
        return self.symbols[0]
