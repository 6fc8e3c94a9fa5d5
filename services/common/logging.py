"""JSON-lines logging on stdout (structlog): ``{"timestamp": ..., "level": ..., "event": ..., ...}``.

Event names are the seed's (``connector_connected``, ``connector_trade`` ...). Per-tick events are
DEBUG and guarded by ``debug_enabled`` on hot paths; state changes are INFO.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog
from opentelemetry import trace

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
_debug_enabled = False


def _orjson_dumps(obj: Any, **_: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def _trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """trace_id / span_id of the current span, when a line is written inside one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _seed_key_order(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """timestamp, level, event first, as in the seed's log lines; the rest after."""
    head: dict[str, Any] = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
    head.update(event_dict)
    return head


class _LateBoundStream:
    """Writes to ``sys.stdout`` / ``sys.stderr`` as they are *now*, not as they were at configure
    time (so a replaced stream, e.g. by a test's capture, never leaves loggers on a closed file)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def write(self, data: bytes) -> None:
        getattr(sys, self._name).buffer.write(data)

    def flush(self) -> None:
        getattr(sys, self._name).buffer.flush()


def configure_logging(level: str = "INFO", stream: Any = None, **context: Any) -> None:
    """Configure structlog once per process; ``context`` (e.g. service=...) is bound to every line."""
    global _debug_enabled
    numeric = _LEVELS.get(level.upper(), logging.INFO)
    _debug_enabled = numeric <= logging.DEBUG
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            _trace_ids,
            _seed_key_order,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(
            _LateBoundStream("stderr" if stream is sys.stderr else "stdout")  # type: ignore[arg-type]
        ),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)


def debug_enabled() -> bool:
    """Cheap check for hot paths, so per-tick DEBUG lines cost nothing when DEBUG is off."""
    return _debug_enabled


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class LogSampler:
    """Rate-limits log lines per key: at most ``per_minute`` lines per key in any minute window.

    For every warning or error on a per-message path (a bad frame, a failed publish ...), so a
    hostile stream or an outage cannot flood the log. ``allow`` returns None to suppress the line,
    else how many lines of that key were suppressed since the last one written (log it as
    ``suppressed``). Keys are reasons (low cardinality); past ``max_keys`` they share one bucket.
    """

    def __init__(
        self, per_minute: int = 10, max_keys: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self._max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, written, suppressed)

    def allow(self, key: str) -> int | None:
        now = self._clock()
        if key not in self._windows and len(self._windows) >= self._max_keys:
            key = "_other"
        start, written, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= 60.0:
            start, written = now, 0
        if written >= self.per_minute:
            self._windows[key] = (start, written, suppressed + 1)
            return None
        self._windows[key] = (start, written + 1, 0)
        return suppressed
