"""Message contracts and subjects of the market-data bus."""

from schemas import subjects
from schemas.models import (
    CONTRACTS,
    SCHEMA_VERSION,
    ContextSnapshot,
    DepthUpdate,
    FeedStatus,
    Signal,
    Status,
    TradeTick,
    json_schemas,
)

__all__ = [
    "CONTRACTS",
    "SCHEMA_VERSION",
    "ContextSnapshot",
    "DepthUpdate",
    "FeedStatus",
    "Signal",
    "Status",
    "TradeTick",
    "json_schemas",
    "subjects",
]
