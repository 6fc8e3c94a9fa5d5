"""NATS subjects. No subject is built anywhere else (no f-string subjects in services)."""

from __future__ import annotations

from schemas import rules


class InvalidSubjectToken(ValueError):
    """A value that cannot be one NATS subject token."""


def check_token(token: str, what: str = "token") -> str:
    """Return ``token`` if it follows the symbol rule (``schemas.rules.symbol``: one subject token
    of [A-Za-z0-9_-], bounded length), else raise ``InvalidSubjectToken``."""
    try:
        return rules.symbol(token, what)
    except rules.RuleViolation as error:
        raise InvalidSubjectToken(error.detail) from None


def trades(symbol: str) -> str:
    """``md.<SYMBOL>.trades``: TradeTick."""
    return f"md.{check_token(symbol, 'symbol')}.trades"


def depth(symbol: str) -> str:
    """``md.<SYMBOL>.depth``: DepthUpdate."""
    return f"md.{check_token(symbol, 'symbol')}.depth"


def status(symbol: str) -> str:
    """``md.<SYMBOL>.status``: Status (state changes of the symbol's feed)."""
    return f"md.{check_token(symbol, 'symbol')}.status"


def book(symbol: str) -> str:
    """``md.<SYMBOL>.book``: request/reply, the feed's current book (a DepthUpdate snapshot)."""
    return f"md.{check_token(symbol, 'symbol')}.book"


#: ``md.status``: request/reply, every feed's current state of each of its instruments (FeedStatus).
#: Each feed answers (a queue group of its own): gather replies to hear from several feeds.
FEED_STATUS = "md.status"


def signals(strategy: str, symbol: str) -> str:
    """``signals.<strategy>.<SYMBOL>``: Signal."""
    return f"signals.{check_token(strategy, 'strategy')}.{check_token(symbol, 'symbol')}"


def context_snapshot(symbol: str) -> str:
    """``context.<SYMBOL>.snapshot``: request/reply, ContextSnapshot."""
    return f"context.{check_token(symbol, 'symbol')}.snapshot"


def symbol_of(subject: str) -> str:
    """The symbol token of ``md.<SYMBOL>.*`` or ``context.<SYMBOL>.snapshot``."""
    parts = subject.split(".")
    if len(parts) != 3:
        raise InvalidSubjectToken(f"subject {subject!r} has no symbol token")
    return parts[1]


def health(service: str) -> str:
    """``health.<service>``: request/reply, the service's health JSON."""
    return f"health.{check_token(service, 'service')}"


#: Destination templates (telemetry: span names and low-cardinality metric attributes).
TRADES_TEMPLATE = "md.{symbol}.trades"
DEPTH_TEMPLATE = "md.{symbol}.depth"
STATUS_TEMPLATE = "md.{symbol}.status"
BOOK_TEMPLATE = "md.{symbol}.book"
SIGNALS_TEMPLATE = "signals.{strategy}.{symbol}"
CONTEXT_SNAPSHOT_TEMPLATE = "context.{symbol}.snapshot"
HEALTH_TEMPLATE = "health.{service}"

#: Subscription patterns (wildcards are only ever used to subscribe).
ALL_MARKET_DATA = "md.>"
ALL_TRADES = "md.*.trades"
ALL_DEPTH = "md.*.depth"
ALL_STATUS = "md.*.status"
ALL_SIGNALS = "signals.>"
CONTEXT_SNAPSHOT_PATTERN = "context.*.snapshot"
BOOK_PATTERN = "md.*.book"
