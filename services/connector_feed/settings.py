"""connector_feed settings (environment / ``.env``): the feed's own; each connector reads its own
section (``binance.settings.BinanceSettings``, ``stub.StubSettings``, ``binance.replay.ReplaySettings``,
``hftbacktest.settings.HbtReplaySettings``) when it is the one chosen."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from services.common.settings import CommonSettings, ReconnectSettings

#: The connectors CONNECTOR_NAME may name (with DATA_SOURCE=hft_connector), and what each one is.
#: Anything else must be ``package.module:ClassName`` (a connector of your own).
BUILT_IN_CONNECTORS: dict[str, str] = {
    "binance_hft": "live Binance via the seed's ConnectorWrapper",
    "hftbacktest": "hftbacktest .npz files",
    "replay": "recorded Binance frames",
    "stub": "synthetic data",
}
_OWN = "package.module:ClassName for a connector of your own"


class FeedSettings(CommonSettings, ReconnectSettings):
    data_source: Literal["binance_ws", "hft_connector"] = Field(
        default="binance_ws",
        description="binance_ws (live Binance, BINANCE_*) or hft_connector (CONNECTOR_NAME). `hftfeed up` "
        "runs the stub unless DATA_SOURCE or BINANCE_MARKET is set; docker compose runs binance_ws",
    )
    connector_name: str | None = Field(
        default=None,
        validate_default=True,
        description="with DATA_SOURCE=hft_connector (required): "
        + ", ".join(BUILT_IN_CONNECTORS)
        + " or package.module:ClassName",
    )
    connector_poll_interval_ms: float = Field(
        default=10.0,
        gt=0,
        le=60_000,
        description="polling connectors only (ConnectorWrapper): wait before asking again when next_event "
        "returns None",
    )
    connector_paper_trading: bool = Field(
        default=True,
        description="true (the only accepted value): market data only; no connector here routes orders",
    )
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
    http_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="serve the seed's /ws/health and /metrics, and /health, /livez, /readyz over HTTP on "
        "this port (unset: no HTTP; NATS health.connector_feed is the primary interface)",
    )
    http_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address the HTTP port listens on: loopback unless set (0.0.0.0 inside a container "
        "whose port is published); the endpoints have no authentication",
    )

    @field_validator("connector_name", mode="before")
    @classmethod
    def _empty_name_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("connector_name")
    @classmethod
    def _known_connector(cls, name: str | None, info: ValidationInfo) -> str | None:
        """Required with DATA_SOURCE=hft_connector (never a silent default: the stub is synthetic
        data); a built-in name or ``package.module:ClassName``."""
        if name is None:
            if info.data.get("data_source") == "hft_connector":
                choices = ", ".join(f"{name} ({what})" for name, what in BUILT_IN_CONNECTORS.items())
                raise ValueError(
                    f"required with DATA_SOURCE=hft_connector: {choices} or {_OWN}; "
                    "or leave DATA_SOURCE unset for live Binance (binance_ws)"
                )
            return None
        name = name.strip()
        module, sep, cls_name = name.partition(":")
        if name in BUILT_IN_CONNECTORS or (sep and module and cls_name):
            return name
        raise ValueError(
            f"unknown connector {name!r}: valid names are {', '.join(BUILT_IN_CONNECTORS)}, or {_OWN}"
        )

    @field_validator("connector_paper_trading")
    @classmethod
    def _paper_only(cls, paper: bool) -> bool:
        if not paper:
            raise ValueError(
                "false is refused: this feed is market data only and nothing in it routes orders "
                "(leave it unset or true)"
            )
        return paper
