"""Settings base (pydantic-settings): environment variables and ``.env``.

Each service has one settings class, loaded once in its ``__main__`` with ``load_settings`` and
passed down; nothing else reads ``os.environ``. A bad value stops start-up with a message that
names the variable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.subjects import check_token
from services.common.natsauth import NatsSecurity, redact_url, servers, url_secrets

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
#: Settings whose value is (or points at) a credential: never echoed, not even when invalid.
_SECRET_FIELDS = frozenset({"nats_password", "nats_token", "nats_creds", "nats_nkey_seed"})
_HIDDEN_PATHS = frozenset({"nats_creds", "nats_nkey_seed"})


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names every bad variable."""


def parse_symbols(value: object) -> list[str]:
    """SYMBOLS: comma-separated, any case (``btcusdt`` is ``BTCUSDT``); each one subject token."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list of symbols")
    symbols = [str(s).strip().upper() for s in items if str(s).strip()]
    if not symbols:
        raise ValueError("at least one symbol is required")
    for symbol in symbols:
        check_token(symbol, "symbol")
    if len(set(symbols)) != len(symbols):
        raise ValueError("duplicate symbol")
    return symbols


class CommonSettings(BaseSettings):
    """What every service reads: where NATS is, which symbols, how to log."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated")
    nats_connect_timeout_s: float = Field(default=5.0, gt=0, description="bound on the first NATS connect")
    # Identity on the bus (one way at most; docs/security.md). Never logged, never in health.
    nats_user: str | None = Field(default=None, description="NATS user name (with NATS_PASSWORD)")
    nats_password: SecretStr | None = Field(default=None, description="NATS password")
    nats_token: SecretStr | None = Field(default=None, description="NATS authentication token")
    nats_creds: FilePath | None = Field(default=None, description="NATS credentials file (JWT + nkey seed)")
    nats_nkey_seed: FilePath | None = Field(default=None, description="file holding an nkey user seed")
    # TLS: on when a CA or client certificate is set or a NATS_URL server is tls://.
    nats_tls_ca: FilePath | None = Field(default=None, description="CA certificate(s) to verify the server")
    nats_tls_cert: FilePath | None = Field(default=None, description="client certificate (mutual TLS)")
    nats_tls_key: FilePath | None = Field(default=None, description="client private key (mutual TLS)")
    nats_tls_hostname: str | None = Field(default=None, description="server certificate name to verify")
    nats_tls_handshake_first: bool = Field(
        default=True, description="TLS first (server: handshake_first); false = upgrade when the server asks"
    )
    nats_inbox_prefix: str = Field(
        default="_INBOX", description="reply subjects of our requests (a server may grant only <prefix>.>)"
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT"], description="comma-separated instrument ids"
    )
    nats_pending_msgs_limit: int = Field(
        default=524_288,
        ge=1,
        description="messages a subscription may hold undelivered before NATS drops (a slow consumer: "
        "counted, and every book resyncs)",
    )
    log_level: LogLevel = Field(
        default="INFO", description="DEBUG adds a line per tick (connector_trade, connector_depth)"
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="uvloop (faster) or the standard asyncio loop"
    )
    health_stale_after_s: float = Field(
        default=10.0, gt=0, description="no market data for this long makes health 'degraded'"
    )

    @field_validator(
        "nats_user",
        "nats_password",
        "nats_token",
        "nats_creds",
        "nats_nkey_seed",
        "nats_tls_ca",
        "nats_tls_cert",
        "nats_tls_key",
        "nats_tls_hostname",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("nats_url")
    @classmethod
    def _valid_nats_url(cls, value: str) -> str:
        if not servers(value):
            raise ValueError("no server")
        for server in servers(value):
            scheme = server.split("://", 1)[0] if "://" in server else "nats"
            if scheme not in ("nats", "tls", "ws", "wss"):
                raise ValueError(f"{redact_url(server)}: scheme must be nats://, tls://, ws:// or wss://")
        return value

    @field_validator("nats_inbox_prefix")
    @classmethod
    def _valid_inbox_prefix(cls, value: str) -> str:
        for token in value.split("."):
            check_token(token, "inbox prefix token")
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> CommonSettings:
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("NATS_USER and NATS_PASSWORD go together: set both or neither")
        ways = [
            name
            for name, value in (
                ("NATS_USER/NATS_PASSWORD", self.nats_user),
                ("NATS_TOKEN", self.nats_token),
                ("NATS_CREDS", self.nats_creds),
                ("NATS_NKEY_SEED", self.nats_nkey_seed),
                ("credentials in NATS_URL", url_secrets(self.nats_url) or None),
            )
            if value is not None
        ]
        if len(ways) > 1:
            raise ValueError(f"choose one way to authenticate to NATS, not {' and '.join(ways)}")
        if (self.nats_tls_cert is None) != (self.nats_tls_key is None):
            raise ValueError("NATS_TLS_CERT and NATS_TLS_KEY go together: set both or neither")
        return self

    def nats_security(self) -> NatsSecurity:
        """The NATS identity and TLS options these settings describe."""
        return NatsSecurity(
            user=self.nats_user,
            password=self.nats_password,
            token=self.nats_token,
            creds_file=self.nats_creds,
            nkey_seed_file=self.nats_nkey_seed,
            tls_ca=self.nats_tls_ca,
            tls_cert=self.nats_tls_cert,
            tls_key=self.nats_tls_key,
            tls_hostname=self.nats_tls_hostname,
            tls_handshake_first=self.nats_tls_handshake_first,
            inbox_prefix=self.nats_inbox_prefix,
        )

    def __repr_args__(self) -> Any:
        """``repr``/``str`` without secrets: URL user-info and credential file paths hidden."""
        for name, value in super().__repr_args__():
            if name == "nats_url" and isinstance(value, str):
                yield name, redact_url(value)
            elif name in _HIDDEN_PATHS and value is not None:
                yield name, "***"
            else:
                yield name, value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        return parse_symbols(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ReconnectSettings(BaseSettings):
    """The one reconnect policy every connector uses (see ``services.common.reconnect``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    reconnect_initial_s: float = Field(default=0.5, gt=0, description="first retry delay")
    reconnect_max_s: float = Field(default=8.0, gt=0, description="cap on the doubling delay")
    reconnect_max_attempts: int = Field(
        default=5,
        ge=0,
        description="attempts before giving up, then the feed exits 1; 0 = forever. Binance "
        "(DATA_SOURCE=binance_ws) retries forever unless this is set: it reports down instead",
    )
    reconnect_jitter: bool = Field(
        default=False,
        description="randomise each delay within [delay/2, delay]; on for Binance unless this is set",
    )
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
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = field.upper() or "(settings)"
        shown = item.get("input")
        if field in _SECRET_FIELDS:
            shown = "***"
        elif field == "nats_url" and isinstance(shown, str):
            shown = redact_url(shown)
        got = f" (got {shown!r})" if shown is not None and not isinstance(shown, dict) else ""
        lines.append(f"{variable}: {item['msg']}{got}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(cls: type[S]) -> S:
    """Load ``cls`` from the environment / ``.env``; raise ``SettingsError`` naming bad variables."""
    try:
        return cls()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
