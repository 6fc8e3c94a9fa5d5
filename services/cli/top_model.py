"""What one refresh of ``hftfeed top`` shows, computed from health replies and bus samples. Pure.

A *snapshot* is plain JSON data (``hftfeed top --json`` prints it; tests render recorded ones):

- ``ts`` (ns), ``url``, ``interval_s``;
- ``health``: each service's health reply (``{"status": "no reply"}`` when it did not answer);
- ``rates``: per service, ``in`` / ``out`` per second over the last interval (from health counters);
- ``instruments``: per instrument id, what top saw on the bus: ``book`` (top's own book keeper:
  state, reason, seq, levels, the best ``bids``/``asks``), ``status`` (the last ``md.<SYMBOL>.status``),
  ``last_trade``, ``trades_per_s`` / ``depth_per_s``, and ``lag_ms``: ``venue`` (venue event time ->
  the feed's receipt) and ``bus`` (the feed's receipt -> top's), each ``{p50, p99, max, n}``;
- ``signals``: the latest signals, newest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Health = dict[str, Any]


def percentiles(samples: Sequence[float]) -> dict[str, float] | None:
    """Nearest-rank p50, p99 and max of ``samples`` (None when there are none)."""
    if not samples:
        return None
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1], "n": len(ordered)}


def _section(reply: Health, *path: str) -> Any:
    value: Any = reply
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _total(value: Any) -> int:
    """A count, or the sum of a ``{name: count}`` object's counts."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return sum(_total(v) for v in value.values())
    return 0


def counters(service: str, reply: Health) -> dict[str, int]:
    """The monotonic counts behind a service's rates: ``in`` (events it took) and ``out`` (it made)."""
    strategies = _section(reply, "strategies") or {}
    if service == "connector_feed":
        return {
            "in": _total(_section(reply, "connector", "connector_health", "event_counter")),
            "out": _total(reply.get("published")),
        }
    if service == "strategy_engine":
        return {
            "in": _total(reply.get("consumed")),
            "out": sum(_total(s.get("signals")) for s in strategies.values() if isinstance(s, dict)),
        }
    return {"in": _total(reply.get("consumed")), "out": _total(reply.get("queries"))}


def counter_rates(
    previous: dict[str, Health] | None, current: dict[str, Health], dt_s: float
) -> dict[str, Any]:
    """Per service, ``in``/``out`` per second between two refreshes (None where unknown)."""
    rates: dict[str, Any] = {}
    for service, reply in current.items():
        before = (previous or {}).get(service)
        if before is None or dt_s <= 0 or reply.get("status") == "no reply" or "uptime_s" not in before:
            rates[service] = {"in": None, "out": None}
            continue
        now, then = counters(service, reply), counters(service, before)
        restarted = reply.get("uptime_s", 0) < before.get("uptime_s", 0)  # a new process: counts restart
        rates[service] = {
            key: None if restarted else max(0, now[key] - then[key]) / dt_s for key in ("in", "out")
        }
    return rates


def queue_size(service: str, reply: Health) -> int | None:
    if service == "connector_feed":
        size = _section(reply, "connector", "queue_size")
        return size if isinstance(size, int) else None
    if service == "strategy_engine":
        strategies = _section(reply, "strategies") or {}
        return sum(_total(s.get("queue_size")) for s in strategies.values() if isinstance(s, dict))
    return None


def _counts(service: str, what: str, value: Any) -> Iterable[tuple[str, str, str, int]]:
    """``(service, what, reason, count)`` for each non-zero count of a ``{reason: count}`` object."""
    if isinstance(value, dict):
        for reason, count in value.items():
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                yield service, what, str(reason), count
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        yield service, what, "", value


def errors_by_reason(health: dict[str, Health]) -> list[tuple[str, str, str, int]]:
    """Everything the services count as going wrong, by reason (non-zero only), biggest first."""
    rows: list[tuple[str, str, str, int]] = []
    for service, reply in health.items():
        venue = _section(reply, "connector", "connector_health") or {}
        rows += _counts(service, "dropped", _section(reply, "dropped", "by_reason"))
        rows += _counts(service, "rejected", reply.get("rejected"))
        rows += _counts(service, "malformed frame", venue.get("malformed"))
        rows += _counts(service, "trade id gap", venue.get("trade_gaps"))
        rows += _counts(service, "book request", _section(reply, "books", "errors"))
        rows += _counts(service, "slow consumer", reply.get("slow_consumer_drops"))
        rows += _counts(service, "nats errors", _section(reply, "nats", "errors"))
        rows += _counts(service, "permission violation", reply.get("permission_violations"))
        rows += _counts(service, "reconnect attempts", _section(reply, "connector", "reconnection_attempts"))
        for name, strategy in (_section(reply, "strategies") or {}).items():
            if isinstance(strategy, dict):
                rows += _counts(service, f"strategy {name}", strategy.get("failures"))
                rows += _counts(service, f"strategy {name}", {"queue overflow": strategy.get("dropped")})
                rows += _counts(service, f"strategy {name}", {"blocked the loop": strategy.get("blocked")})
                rows += _counts(
                    service, f"strategy {name}", {"publish failed": strategy.get("publish_errors")}
                )
        for symbol, book in (_section(reply, "symbols") or {}).items():
            if isinstance(book, dict):
                rows += _counts(service, "book gaps", {symbol: book.get("book_gaps")})
    return sorted(rows, key=lambda row: (-row[3], row[0], row[1], row[2]))


def instrument_ids(snapshot: dict[str, Any]) -> list[str]:
    """Every instrument the feed publishes, top saw, or context follows, sorted."""
    health = snapshot.get("health") or {}
    ids = set(snapshot.get("instruments") or {})
    feed = health.get("connector_feed") or {}
    ids.update(str(i) for i in feed.get("instruments") or [])
    ids.update(str(s) for s in _section(health.get("context") or {}, "symbols") or {})
    return sorted(ids)


def feed_book_state(snapshot: dict[str, Any], symbol: str) -> str | None:
    """The feed's own view of ``symbol``: its venue book state and the symbol's status, if it says."""
    venue = _section(snapshot.get("health") or {}, "connector_feed", "connector", "connector_health") or {}
    state = _section(venue, "symbols", symbol)  # the venue connector's per-symbol state
    book = _section(venue, "books", symbol, "state")  # its local book of the venue (Binance, replay)
    status = _section(snapshot.get("instruments") or {}, symbol, "status", "state")  # md.<SYMBOL>.status
    for found in (state, status, book):
        if isinstance(found, str):
            return found
    return None
