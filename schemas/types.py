"""Field types shared by every contract: exact decimals, subject-safe tokens, nanosecond times.

Prices and quantities are ``Decimal`` in Python and plain-notation JSON strings on the wire
(``"0.00000001"``, never ``"1E-8"`` and never a binary float), so the string a venue sent is
exactly the string a subscriber reads. Every field applies the one rule of its kind from
``schemas.rules``; decoding JSON accepts decimals only as strings, and ints and bools only as
JSON numbers and booleans (no lax coercion), so the pydantic contracts and the fast consumer
decoders (``schemas.wire``) accept and refuse exactly the same messages.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, Strict, ValidationInfo, WithJsonSchema

from schemas import rules

#: Kept for existing imports: the anchored plain-decimal pattern of the JSON Schemas.
DECIMAL_PATTERN = rules.DECIMAL_PATTERN


def decimal_to_wire(value: Decimal) -> str:
    """Plain notation, keeping every digit the venue sent (``format(d, "f")``, not ``str(d)``)."""
    return format(value, "f")


def _decimal_field(field: str, *, positive: bool) -> Callable[[Any, ValidationInfo], Decimal]:
    def check(value: Any, info: ValidationInfo) -> Decimal:
        if info.mode == "json" and type(value) is not str:
            raise ValueError(f"{field} must be a decimal string, got {type(value).__name__}")
        return Decimal(rules.decimal_value(value, field, positive=positive))

    return check


def _signed_decimal(value: Any, info: ValidationInfo) -> Decimal:
    if info.mode == "json" and type(value) is not str:
        raise ValueError(f"must be a decimal string, got {type(value).__name__}")
    if type(value) is str:
        negative, digits = value.startswith("-"), value.removeprefix("-")
        text = rules.decimal_text(digits, "value", positive=False)
    else:
        number = Decimal(value) if type(value) in (int, Decimal) else None
        if number is None or not number.is_finite():
            raise ValueError(f"must be a finite decimal, got {rules.preview(value)}")
        negative, text = number < 0, rules.decimal_value(abs(number), "value", positive=False)
    return Decimal(f"-{text}" if negative else text)


def _decimal_schema(
    pattern: str, description: str, max_length: int = rules.DECIMAL_MAX_LENGTH
) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "maxLength": max_length, "description": description}
    )


_to_wire = PlainSerializer(decimal_to_wire, return_type=str, when_used="json")

#: A price: plain notation, > 0, at most 40 characters.
Price = Annotated[
    Decimal,
    BeforeValidator(_decimal_field("price", positive=True)),
    _to_wire,
    _decimal_schema(rules.POSITIVE_DECIMAL_PATTERN, "price, exact decimal string (plain notation, > 0)"),
]
#: A quantity: plain notation, >= 0 (0 removes a book level), at most 40 characters.
Qty = Annotated[
    Decimal,
    BeforeValidator(_decimal_field("qty", positive=False)),
    _to_wire,
    _decimal_schema(rules.DECIMAL_PATTERN, "quantity, exact decimal string (plain notation, >= 0)"),
]
#: A signed exact decimal (a signal's strength, a spread).
SignedDecimal = Annotated[
    Decimal,
    BeforeValidator(_signed_decimal),
    _to_wire,
    _decimal_schema(
        rules.SIGNED_DECIMAL_PATTERN, "signed exact decimal string", rules.DECIMAL_MAX_LENGTH + 1
    ),
]

#: Instrument id used as one subject token: ``BTCUSDT`` (spot), ``BTCUSDT-PERP`` (USD-M perpetual).
Symbol = Annotated[str, Strict(), Field(pattern=rules.SYMBOL_PATTERN)]
#: Exchange id: ``stub``, ``binance``, ``binance_usdm`` or a user connector's own id.
ExchangeId = Annotated[str, Strict(), Field(pattern=rules.EXCHANGE_PATTERN)]
#: Integer nanoseconds since the Unix epoch (int64).
TimestampNs = Annotated[int, Strict(), Field(ge=0, le=rules.TIMESTAMP_MAX)]
#: A venue's trade or update id (uint64).
Id = Annotated[int, Strict(), Field(ge=0, le=rules.ID_MAX)]
#: A message's place in its (symbol, subject) stream within one feed run: 1, 2, 3 ...
Seq = Annotated[int, Strict(), Field(ge=1, le=rules.TIMESTAMP_MAX)]
#: The id of one run of a feed process (a new one at every start): one token of [A-Za-z0-9_-].
FeedRun = Annotated[str, Strict(), Field(pattern=rules.SYMBOL_PATTERN)]
#: A count (never coerced from a string or a float).
Count = Annotated[int, Strict(), Field(ge=0)]
#: A strict boolean (JSON true/false only).
Flag = Annotated[bool, Strict()]
#: Aggressor side of a trade.
Side = Literal["buy", "sell"]


def _version_one(value: Any) -> Any:
    if type(value) is not int:  # Literal[1] alone would take true and 1.0
        raise ValueError(f"schema_version must be the integer 1, got {rules.preview(value)}")
    return value


#: The contract version (1); a message of another version is refused, not guessed at.
SchemaVersion = Annotated[Literal[1], BeforeValidator(_version_one)]
