"""Settings base (pydantic-settings): environment variables and ``.env``.

Each service has one settings class, loaded once in its ``__main__`` with ``load_settings`` and
passed down; nothing else reads ``os.environ``. A bad value stops start-up with a message that
names the variable.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.subjects import check_token

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names every bad variable."""


class CommonSettings(BaseSettings):
    """What every service reads: where NATS is, which symbols, how to log."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated")
    nats_connect_timeout_s: float = Field(default=5.0, gt=0, description="bound on the first NATS connect")
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT"], description="comma-separated instrument ids"
    )
    log_level: LogLevel = "INFO"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="uvloop (faster) or the standard asyncio loop"
    )
    health_stale_after_s: float = Field(
        default=10.0, gt=0, description="no market data for this long makes health 'degraded'"
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _valid_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is required")
        for symbol in value:
            check_token(symbol, "symbol")
        if len(set(value)) != len(value):
            raise ValueError("duplicate symbol")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ReconnectSettings(BaseSettings):
    """The one reconnect policy every connector uses (see ``services.common.reconnect``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    reconnect_initial_s: float = Field(default=0.5, gt=0, description="first retry delay")
    reconnect_max_s: float = Field(default=8.0, gt=0, description="cap on the doubling delay")
    reconnect_max_attempts: int = Field(default=5, ge=0, description="attempts before giving up; 0 = forever")
    reconnect_jitter: bool = Field(default=False, description="randomise each delay within [delay/2, delay]")
    reconnect_reset_after_s: float = Field(
        default=30.0,
        ge=0,
        description="a connection must stay up this long before the attempt counter resets",
    )


S = TypeVar("S", bound=BaseSettings)


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad variable, e.g. ``MAX_QUEUE: Input should be a valid integer (got 'x')``."""
    lines = []
    for item in error.errors():
        variable = str(item["loc"][0]).upper() if item["loc"] else "(settings)"
        got = f" (got {item['input']!r})" if not isinstance(item.get("input"), dict) else ""
        lines.append(f"{variable}: {item['msg']}{got}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(cls: type[S]) -> S:
    """Load ``cls`` from the environment / ``.env``; raise ``SettingsError`` naming bad variables."""
    try:
        return cls()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
