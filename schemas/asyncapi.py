"""The AsyncAPI 3 document of the bus (``schemas/asyncapi.json``), built from the contracts and subjects.

Channel addresses are the templates of ``schemas/subjects.py``; message payloads are ``$ref``\\ s to the
JSON Schemas ``python -m schemas`` writes into ``schemas/json/`` (resolved relative to the document,
which sits next to that folder). Only what has no model is spelled here: the health report, the
error reply of a request/reply endpoint and the optional body of a book request.

The document describes the hftfeed services as one application: ``send`` operations are what they
publish, ``receive`` operations the requests they answer (each with its ``reply``). A client does the
opposite of each.
"""

from __future__ import annotations

import re
from typing import Any

from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from schemas import subjects
from schemas.models import CONTRACTS, SCHEMA_VERSION, Contract, DepthUpdate, Signal, Status, TradeTick

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA_DIR = "./json"  # relative to the document
#: ``md.<SYMBOL>.book`` (request/reply, issue 13). Until schemas/subjects.py defines it, its one spelling.
BOOK_TEMPLATE = subjects.BOOK_TEMPLATE

_PARAMETERS = {
    "symbol": {
        "description": "Instrument id, one subject token: Binance spot `BTCUSDT`, USD-M `BTCUSDT-PERP`.",
        "examples": ["BTCUSDT", "BTCUSDT-PERP"],
    },
    "strategy": {"description": "Strategy name (`STRATEGIES`).", "examples": ["vwap"]},
    "service": {"description": "Service name.", "examples": ["connector_feed", "strategy_engine", "context"]},
}
_MD_HEADERS = {
    "type": "object",
    "description": "Present only on sampled messages (a trace, or a latency sample).",
    "properties": {
        "traceparent": {"type": "string", "description": "W3C trace context of the publish span."}
    },
}
_EMPTY_REQUEST = {
    "contentType": "application/octet-stream",
    "summary": "An empty body.",
    "headers": {
        "type": "object",
        "properties": {"traceparent": {"type": "string", "description": "W3C trace context (optional)."}},
    },
}
_TS = 1_770_000_000_000_000_000
_EXAMPLES: dict[str, Contract] = {
    "trade_tick": TradeTick(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=4812345678,
        price="64123.45000000",
        qty="0.00150000",
        side="buy",
        is_buyer_maker=False,
        ts_event=_TS,
        ts_recv=_TS + 1_250_000,
    ),
    "depth_update": DepthUpdate(
        exchange="binance",
        symbol="BTCUSDT",
        bids=[("64123.45000000", "0.50000000")],
        asks=[("64123.46000000", "0.00000000")],
        is_snapshot=False,
        first_update_id=1001,
        last_update_id=1003,
        ts_event=_TS,
        ts_recv=_TS + 900_000,
    ),
    "signal": Signal(
        strategy="vwap",
        symbol="BTCUSDT",
        side="sell",
        strength="-0.0012",
        reason="price 12.5 bps above the 60 s VWAP",
        ts_event=_TS,
        ts=_TS + 2_000_000,
    ),
    "status": Status(
        exchange="binance",
        symbol="BTCUSDT",
        stream="depth",
        state="resyncing",
        reason="update-id gap",
        ts=_TS,
    ),
}


def _payload(stem: str) -> dict[str, str]:
    return {"$ref": f"{JSON_SCHEMA_DIR}/{stem}.json"}


def _message(stem: str, summary: str, published: bool = True) -> dict[str, Any]:
    model = CONTRACTS[stem]
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "summary": summary,
        "contentType": "application/json",
        "payload": _payload(stem),
    }
    if published:
        message["headers"] = _MD_HEADERS
    if stem in _EXAMPLES:
        message["examples"] = [{"name": "example", "payload": _EXAMPLES[stem].model_dump(mode="json")}]
    return message


def _channel(address: str | None, messages: dict[str, str], description: str) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{ref}"} for name, ref in messages.items()},
    }
    names = re.findall(r"\{(\w+)\}", address or "")
    if names:
        channel["parameters"] = {name: _PARAMETERS[name] for name in names}
    return channel


def _operation(
    action: str, channel: str, service: str, summary: str, reply: str | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "tags": [{"name": service}],
    }
    if reply is not None:
        operation["reply"] = {"channel": {"$ref": f"#/channels/{reply}"}}
    return operation


def _schemas() -> dict[str, Any]:
    return {
        "HealthReport": {
            "type": "object",
            "description": "A service's health. Each service adds sections of its own (the feed: connector, "
            "published, dropped, rejected; the consumers: consumed, slow_consumer_drops, ...).",
            "required": ["service", "status", "reasons", "uptime_s", "version"],
            "properties": {
                "service": {"type": "string"},
                "status": {
                    "enum": ["ok", "degraded", "down"],
                    "description": "down: not connected (to NATS, or the feed to its venue) or given up; "
                    "degraded: connected but stale, resyncing or dropping; ok otherwise.",
                },
                "reasons": {"type": "array", "items": {"type": "string"}, "description": "Why not ok."},
                "uptime_s": {"type": "number", "minimum": 0},
                "version": {"type": "string"},
            },
        },
        "ServiceError": {
            "type": "object",
            "description": "The JSON body of an error reply (more fields may follow, e.g. known_symbols).",
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "integer"}},
        },
        "ServiceErrorHeaders": {
            "type": "object",
            "description": "The NATS micro error headers: a reply that has them is an error.",
            "required": [ERROR_HEADER, ERROR_CODE_HEADER],
            "properties": {
                ERROR_HEADER: {"type": "string", "description": "What went wrong."},
                ERROR_CODE_HEADER: {
                    "type": "string",
                    "description": "An HTTP-like code: 404 unknown symbol, ...",
                },
            },
        },
        "BookRequest": {
            "type": "object",
            "description": "Optional: an empty body asks for the whole book.",
            "properties": {
                "depth": {"type": "integer", "minimum": 1, "description": "Levels per side, best first."}
            },
            "additionalProperties": False,
        },
    }


def _messages() -> dict[str, Any]:
    error = {
        "name": "ServiceError",
        "summary": "An error reply: the request could not be answered (unknown symbol, book resyncing ...).",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/ServiceErrorHeaders"},
        "payload": {"$ref": "#/components/schemas/ServiceError"},
    }
    snapshot = {
        "name": "BookSnapshot",
        "title": "BookSnapshot",
        "summary": "The whole current book: a DepthUpdate with is_snapshot true.",
        "contentType": "application/json",
        "payload": {"allOf": [_payload("depth_update"), {"properties": {"is_snapshot": {"const": True}}}]},
    }
    return {
        "TradeTick": _message("trade_tick", "One trade; side is the aggressor's."),
        "DepthUpdate": _message(
            "depth_update", "A whole book (is_snapshot) or a delta of absolute quantities."
        ),
        "Status": _message("status", "A change of a symbol's market-data state."),
        "Signal": _message("signal", "A strategy's view on a symbol."),
        "ContextSnapshot": _message(
            "context_snapshot", "Rolling market context of one symbol.", published=False
        ),
        "FeedStatus": _message(
            "feed_status", "The current state of every instrument of one feed.", published=False
        ),
        "FeedStatusRequest": {**_EMPTY_REQUEST, "name": "FeedStatusRequest"},
        "BookSnapshot": snapshot,
        "BookRequest": {
            **_EMPTY_REQUEST,
            "name": "BookRequest",
            "contentType": "application/json",
            "summary": 'An empty body, or {"depth": N}.',
            "payload": {"$ref": "#/components/schemas/BookRequest"},
        },
        "ContextRequest": {**_EMPTY_REQUEST, "name": "ContextRequest"},
        "HealthRequest": {**_EMPTY_REQUEST, "name": "HealthRequest"},
        "HealthReport": {
            "name": "HealthReport",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/HealthReport"},
        },
        "ServiceError": error,
    }


_DESCRIPTION = """\
Normalised exchange market data on NATS. `connector_feed` publishes trades, depth and status per
instrument and answers status and book requests; `strategy_engine` publishes signals; `context` answers
context snapshots; every service answers health requests (and NATS micro `$SRV.PING/INFO/STATS`).

Conventions: prices and quantities are exact decimal strings in plain notation (parse them with a
decimal type, never a float); times are integer nanoseconds since the epoch (`ts_event` the venue's,
`ts_recv` ours). Depth: a message with `is_snapshot: true` replaces the whole book; a delta carries
absolute level quantities (0 removes the level) and `first_update_id..last_update_id` to chain it.
Models are tolerant readers: ignore fields you do not know; they change additively (`schema_version`).
Request/reply: reply subjects are NATS inboxes; an error reply carries the NATS micro error headers.
"""


def asyncapi_document() -> dict[str, Any]:
    """The whole document, as plain JSON data."""
    channels = {
        "trades": _channel(
            subjects.TRADES_TEMPLATE, {"tradeTick": "TradeTick"}, "Every trade of the instrument."
        ),
        "depth": _channel(
            subjects.DEPTH_TEMPLATE,
            {"depthUpdate": "DepthUpdate"},
            "Order-book depth: a snapshot on every (re)sync, then deltas that continue it.",
        ),
        "status": _channel(
            subjects.STATUS_TEMPLATE, {"status": "Status"}, "On every change of the instrument's state."
        ),
        "feedStatus": _channel(
            subjects.FEED_STATUS,
            {"feedStatusRequest": "FeedStatusRequest"},
            "Ask every feed for the current state of each of its instruments (for subscribers that join "
            "late: subscribe to the status subjects first, then ask). Each feed answers: gather replies "
            "for a moment to hear from several.",
        ),
        "feedStatusReply": _channel(
            None, {"feedStatus": "FeedStatus"}, "One feed's reply: a Status per instrument, as of its ts."
        ),
        "book": _channel(
            BOOK_TEMPLATE, {"bookRequest": "BookRequest"}, "Ask the feed for the current full book."
        ),
        "bookReply": _channel(
            None,
            {"bookSnapshot": "BookSnapshot", "serviceError": "ServiceError"},
            "The reply to a book request: the book, or an error (unknown symbol, book resyncing).",
        ),
        "signals": _channel(
            subjects.SIGNALS_TEMPLATE, {"signal": "Signal"}, "A strategy's signals on one instrument."
        ),
        "contextSnapshot": _channel(
            subjects.CONTEXT_SNAPSHOT_TEMPLATE,
            {"contextRequest": "ContextRequest"},
            "Ask the context service for the instrument's rolling context.",
        ),
        "contextSnapshotReply": _channel(
            None,
            {"contextSnapshot": "ContextSnapshot", "serviceError": "ServiceError"},
            "The reply to a context request: the snapshot, or an error (404: unknown symbol).",
        ),
        "health": _channel(
            subjects.HEALTH_TEMPLATE, {"healthRequest": "HealthRequest"}, "Ask a service for its health."
        ),
        "healthReply": _channel(None, {"healthReport": "HealthReport"}, "A service's health report."),
    }
    operations = {
        "publishTrades": _operation("send", "trades", "connector_feed", "Publish each trade."),
        "publishDepth": _operation("send", "depth", "connector_feed", "Publish book snapshots and deltas."),
        "publishStatus": _operation("send", "status", "connector_feed", "Publish state changes."),
        "answerFeedStatus": _operation(
            "receive",
            "feedStatus",
            "connector_feed",
            "Reply with every instrument's state.",
            "feedStatusReply",
        ),
        "answerBook": _operation(
            "receive", "book", "connector_feed", "Reply with the current book.", "bookReply"
        ),
        "publishSignals": _operation("send", "signals", "strategy_engine", "Publish strategy signals."),
        "answerContextSnapshot": _operation(
            "receive", "contextSnapshot", "context", "Reply with the rolling context.", "contextSnapshotReply"
        ),
        "answerHealth": _operation(
            "receive", "health", "every service", "Reply with the health report.", "healthReply"
        ),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "hftfeed market-data bus",
            "version": str(SCHEMA_VERSION),
            "description": _DESCRIPTION,
        },
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The NATS of `hftfeed up` and of docker compose (NATS_URL).",
            }
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": _messages(), "schemas": _schemas()},
    }
