"""One rule per kind of value, applied at every input boundary.

Venue frames (the Binance parser), connector events (the normaliser), contracts (the pydantic
models) and every message a consumer decodes (``schemas.wire``) use these functions and patterns,
and the JSON Schemas publish the same patterns, so one value is accepted or refused the same way
everywhere:

- **decimal** (prices, quantities): plain notation only - digits, at most one point, no sign, no
  exponent, no leading zeros - and at most ``DECIMAL_MAX_LENGTH`` characters. Real venues use far
  fewer (Binance: at most 8 decimals and ~20 characters); the bound keeps a hostile
  ``"1e99999999"`` or a 10 kB digit string out of every book, sum and log line.
- **symbol** (instrument ids, strategy names): one NATS subject token of ``[A-Za-z0-9_-]``, at
  most ``SYMBOL_MAX_LENGTH`` characters (``BTCUSDT``, ``BTCUSDT-PERP``, ``BTCUSDT_250627``).
- **exchange** id: ``[a-z0-9_]``, at most 32 characters.
- **timestamp**: integer nanoseconds since the epoch, ``0 <= t <= 2**63 - 1`` (int64).
- **id** (trade and update ids): ``0 <= id <= 2**64 - 1`` (uint64).

A refusal raises ``RuleViolation`` with a stable ``reason`` (a counter label) and a ``detail``
that quotes the bad value through ``preview`` (bounded, never the whole input).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final, cast

import orjson

#: One price level as on the wire: (price, qty) decimal strings - a venue's own pair, or a tuple.
Level = Sequence[str]

DECIMAL_MAX_LENGTH: Final = 40
SYMBOL_MAX_LENGTH: Final = 64
EXCHANGE_MAX_LENGTH: Final = 32
TIMESTAMP_MAX: Final = 2**63 - 1
ID_MAX: Final = 2**64 - 1

#: Unanchored pattern texts (for building fused patterns); the ``*_PATTERN`` are the anchored ones
#: published in the JSON Schemas (with ``maxLength`` beside them).
DECIMAL_TEXT: Final = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
POSITIVE_DECIMAL_TEXT: Final = r"(?:0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(?:\.[0-9]+)?)"
DECIMAL_PATTERN: Final = f"^{DECIMAL_TEXT}$"
POSITIVE_DECIMAL_PATTERN: Final = f"^{POSITIVE_DECIMAL_TEXT}$"
SIGNED_DECIMAL_PATTERN: Final = f"^-?{DECIMAL_TEXT}$"
SYMBOL_PATTERN: Final = f"^[A-Za-z0-9_-]{{1,{SYMBOL_MAX_LENGTH}}}$"
EXCHANGE_PATTERN: Final = f"^[a-z0-9_]{{1,{EXCHANGE_MAX_LENGTH}}}$"

#: A whole ``[["price","qty"],...]`` array as orjson writes it: every price and quantity a plain
#: decimal string of at most DECIMAL_MAX_LENGTH characters, every price > 0. The same language as
#: DECIMAL_TEXT / POSITIVE_DECIMAL_TEXT, written with possessive quantifiers (no backtracking: the
#: hot loop of every depth message; tests/test_properties.py checks it against the per-value rules).
_BOUND = rb'(?=[0-9.]{1,%d}+")' % DECIMAL_MAX_LENGTH
#: POSITIVE_DECIMAL_TEXT and DECIMAL_TEXT without backtracking, for the hot paths' fused patterns.
POSITIVE_DECIMAL_FAST_TEXT: Final = r"(?:0\.0*+[1-9][0-9]*+|[1-9][0-9]*+(?:\.[0-9]++)?+)"
DECIMAL_FAST_TEXT: Final = r"(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+"
_POSITIVE_FAST = POSITIVE_DECIMAL_FAST_TEXT.encode()
_DECIMAL_FAST = DECIMAL_FAST_TEXT.encode()
_LEVEL = rb'\["' + _BOUND + _POSITIVE_FAST + rb'","' + _BOUND + _DECIMAL_FAST + rb'"\]'
LEVELS: Final = re.compile(rb"\[(?:" + _LEVEL + rb",)*+" + _LEVEL + rb"\]|\[\]")
#: LEVELS without the length bound, for a decoder that bounds every value's length itself (msgspec
#: ``max_length``: ~30 % of the pattern's time is the bound).
_LEVEL_UNBOUNDED = rb'\["' + _POSITIVE_FAST + rb'","' + _DECIMAL_FAST + rb'"\]'
LEVELS_UNBOUNDED_TEXT: Final = rb"\[(?:" + _LEVEL_UNBOUNDED + rb",)*+" + _LEVEL_UNBOUNDED + rb"\]|\[\]"
_DECIMAL = re.compile(DECIMAL_TEXT)
_POSITIVE = re.compile(POSITIVE_DECIMAL_TEXT)
_SYMBOL = re.compile(SYMBOL_PATTERN.strip("^$"))
_EXCHANGE = re.compile(EXCHANGE_PATTERN.strip("^$"))


class RuleViolation(ValueError):
    """A value that breaks its rule. ``reason`` is a stable, low-cardinality counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def preview(value: object, limit: int = 80) -> str:
    """A bounded, safe description of any input for error messages and logs.

    Never the whole value (a 1 MB message stays out of the log), never a recursion (a JSON
    nesting 1,000 deep has no usable ``repr``).
    """
    if isinstance(value, memoryview):
        value = bytes(value[: limit + 1])
    if isinstance(value, str | bytes | bytearray):
        text = repr(value[: limit + 1])
    elif value is None or isinstance(value, bool | int | float | Decimal):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 256 else "<huge int>"
    else:
        size = f", len {len(value)}" if isinstance(value, list | tuple | dict | set) else ""
        text = f"<{type(value).__name__}{size}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """Our own text (an error's repr ...) cut to ``limit`` characters for a log line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decimal_text(value: str, field: str, *, positive: bool) -> str:
    """A decimal string as it travels: plain notation, bounded length (> 0 when ``positive``)."""
    if len(value) <= DECIMAL_MAX_LENGTH and (_POSITIVE if positive else _DECIMAL).fullmatch(value):
        return value
    raise _decimal_violation(value, field, positive=positive)


def decimal_value(value: object, field: str, *, positive: bool) -> str:
    """Any decimal a Python connector may hand over (str, Decimal, int, float) -> its wire string.

    Strings must already be plain notation (``decimal_text``); numbers are written in plain
    notation first (floats through their shortest ``repr``, never ``Decimal(float)``'s 50 digits)
    and then meet the same rule.
    """
    kind = type(value)
    if kind is str:
        return decimal_text(value, field, positive=positive)  # type: ignore[arg-type]
    if kind is float:
        number = Decimal(repr(value))
    elif kind is int:
        number = Decimal(value)  # type: ignore[arg-type]
    elif kind is Decimal:
        number = value  # type: ignore[assignment]
    else:
        raise RuleViolation("wrong_type", f"{field} must be a decimal string or number, got {kind.__name__}")
    if not number.is_finite():
        raise RuleViolation(f"{'nan' if number.is_nan() else 'infinite'}_{field}", f"{field} is {number}")
    if number.is_signed() and number != 0:
        raise RuleViolation(f"negative_{field}", f"{field} must not be negative, got {preview(str(number))}")
    if abs(number.adjusted()) > DECIMAL_MAX_LENGTH:  # before format(): 1e999999 would be 1 MB of text
        raise RuleViolation(f"too_long_{field}", f"{field} {preview(str(number))} is out of range")
    return decimal_text(format(abs(number), "f"), field, positive=positive)  # abs(): -0 is 0


def _decimal_violation(value: str, field: str, *, positive: bool) -> RuleViolation:
    if len(value) > DECIMAL_MAX_LENGTH:
        return RuleViolation(
            f"too_long_{field}", f"{field} has {len(value)} characters (at most {DECIMAL_MAX_LENGTH})"
        )
    if _DECIMAL.fullmatch(value):  # plain, so only "> 0" failed
        return RuleViolation(f"non_positive_{field}", f"{field} must be > 0, got {value!r}")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        number = None
    if number is not None and number.is_nan():
        return RuleViolation(f"nan_{field}", f"{field} is NaN")
    if number is not None and number.is_infinite():
        return RuleViolation(f"infinite_{field}", f"{field} is infinite")
    if number is not None and number < 0:
        return RuleViolation(f"negative_{field}", f"{field} must not be negative, got {value!r}")
    return RuleViolation(
        f"invalid_{field}",
        f"{field} {preview(value)} is not a plain decimal (digits and one '.', no exponent)",
    )


def symbol(value: object, what: str = "symbol") -> str:
    """An instrument id or strategy name: one subject token of [A-Za-z0-9_-], bounded length."""
    if type(value) is not str:
        raise RuleViolation("wrong_type", f"{what} must be a string, got {type(value).__name__}")
    if not _SYMBOL.fullmatch(value):
        raise RuleViolation(
            f"invalid_{what}",
            f"{what} {preview(value)} is not a valid subject token "
            f"(1-{SYMBOL_MAX_LENGTH} of A-Z a-z 0-9 _ -)",
        )
    return value


def exchange(value: object) -> str:
    if type(value) is not str or not _EXCHANGE.fullmatch(value):
        raise RuleViolation(
            "invalid_exchange", f"exchange {preview(value)} is not 1-32 characters of a-z 0-9 _"
        )
    return value


def timestamp_ns(value: object, what: str = "timestamp") -> int:
    """Integer nanoseconds within int64, not before the epoch."""
    if type(value) is not int:
        raise RuleViolation("wrong_type", f"{what} must be an int (ns), got {type(value).__name__}")
    if not 0 <= value <= TIMESTAMP_MAX:
        raise RuleViolation("invalid_timestamp", f"{what} {preview(value)} is outside 0..2**63-1 ns")
    return value


def id_value(value: object, what: str = "id") -> int:
    """A trade or update id: an int within uint64."""
    if type(value) is not int:
        raise RuleViolation("wrong_type", f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= ID_MAX:
        raise RuleViolation("invalid_id", f"{what} {preview(value)} is outside 0..2**64-1")
    return value


def levels(raw: object, side: str = "levels") -> list[Level]:
    """``[["price", "qty"], ...]`` (any sequences of two strings), checked, returned as given.

    The hot loop of every depth message. A regex per string costs ~0.3 µs; one regex over the
    compactly re-serialised array checks every level in one C-level pass (anything that is not a
    pair of plain, bounded decimal strings with price > 0 fails it). The venue's own pairs are
    kept - no copy per level: they are already canonical (plain notation, the venue's digits).
    """
    if type(raw) is not list:
        raise RuleViolation("invalid_levels", f"{side} must be a list of [price, qty], got {preview(raw)}")
    try:
        ok = LEVELS.fullmatch(orjson.dumps(raw)) is not None
    except (orjson.JSONEncodeError, RecursionError):  # nested too deep, or not JSON data
        ok = False
    if not ok:
        raise RuleViolation(
            "invalid_levels",
            f"{side} must be [[price > 0, qty], ...] of plain decimal strings "
            f"(at most {DECIMAL_MAX_LENGTH} characters): {preview(raw)}",
        )
    return cast("list[Level]", raw)
