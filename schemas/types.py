"""Field types shared by every contract: exact decimals, subject-safe tokens, nanosecond times.

Prices and quantities are ``Decimal`` in Python and plain-notation JSON strings on the wire
(``"0.00000001"``, never ``"1E-8"`` and never a binary float), so the string a venue sent is
exactly the string a subscriber reads.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer, WithJsonSchema

#: Plain decimal notation as it travels on the wire: no sign, no exponent, no leading zeros.
DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
#: One NATS subject token: no separators, wildcards or whitespace.
TOKEN_PATTERN = r"^[^.*>\s]+$"


def decimal_to_wire(value: Decimal) -> str:
    """Plain notation, keeping every digit the venue sent (``format(d, "f")``, not ``str(d)``)."""
    return format(value, "f")


def _decimal_schema(description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "description": description})


_to_wire = PlainSerializer(decimal_to_wire, return_type=str, when_used="json")

#: A price: finite and strictly positive.
Price = Annotated[
    Decimal, Field(gt=0, allow_inf_nan=False), _to_wire, _decimal_schema("price, exact decimal string")
]
#: A quantity: finite and non-negative (0 removes a book level).
Qty = Annotated[
    Decimal, Field(ge=0, allow_inf_nan=False), _to_wire, _decimal_schema("quantity, exact decimal string")
]
#: A signed exact decimal (e.g. a signal's strength).
SignedDecimal = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    _to_wire,
    WithJsonSchema({"type": "string", "pattern": r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"}),
]

#: Instrument id used as one subject token: ``BTCUSDT`` (spot), ``BTCUSDT-PERP`` (USD-M perpetual).
Symbol = Annotated[str, Field(pattern=TOKEN_PATTERN, min_length=1, max_length=64)]
#: Exchange id: ``stub``, ``binance``, ``binance_usdm`` or a user connector's own id.
ExchangeId = Annotated[str, Field(pattern=r"^[a-z0-9_]+$", min_length=1, max_length=32)]
#: Integer nanoseconds since the Unix epoch.
TimestampNs = Annotated[int, Field(ge=0)]
#: Aggressor side of a trade.
Side = Literal["buy", "sell"]
