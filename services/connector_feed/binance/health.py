"""What the Binance connector reports: its health section and its counters (metrics)."""

from __future__ import annotations

import time
from typing import Any

from services.connector_feed.binance.decoder import BinanceDecoder
from services.connector_feed.binance.supervisor import LinkSupervisor
from services.connector_feed.binance.syncer import SnapshotSyncer
from services.connector_feed.binance.tap import RecorderTap
from services.connector_feed.binance.watch import StreamWatch
from services.connector_feed.connector import ConnectorCounters


def health(
    decoder: BinanceDecoder,
    supervisor: LinkSupervisor,
    syncer: SnapshotSyncer,
    watch: StreamWatch,
    tap: RecorderTap | None,
) -> dict[str, Any]:
    states = decoder.states
    now = time.monotonic()
    not_live = {s: state for s, state in states.states().items() if state != "live"}
    return {
        "connected": supervisor.is_connected(),
        "subscribed_trades": list(decoder.symbols),
        "subscribed_depth": list(decoder.symbols),
        "event_counter": decoder.frames,
        "market": decoder.market,
        "symbols": states.states(),
        # Each symbol that is not live: its state and why (the reason of its last state change).
        "reasons": {s: f"{state}: {states.reasons.get(s, '')}" for s, state in not_live.items()},
        "connections": [
            {"path": link.path, "streams": len(link.streams), "age_s": round(now - link.opened_at, 1)}
            for link in supervisor.links
        ],
        "rotations": supervisor.rotations,
        "forced_rotations": supervisor.forced_rotations,
        "reconnects": supervisor.reconnects,
        "half_open": supervisor.half_open,
        "resubscribes": supervisor.resubscribes,
        "stale_repairs": watch.repairs,
        # Trades of the connection's own stream, and depth diffs, the typed fast paths left to the
        # full parser: ~0 unless Binance changed the frame (a new field): speed, never correctness.
        "fast_path_misses": decoder.parser.fast.misses,
        "fast_path_depth_misses": decoder.parser.fast_depth.misses,
        **decoder.health(),
        "rest": syncer.health(),
        "recorder": None if tap is None else tap.health(),
    }


def counters(
    decoder: BinanceDecoder, supervisor: LinkSupervisor, syncer: SnapshotSyncer
) -> ConnectorCounters:
    """Over the process's life: every book, dedupe and link counter only grows (reconnects included)."""
    books = decoder.books
    errors = {f"malformed_{reason}": n for reason, n in decoder.malformed.items()}
    errors["trade_gaps"] = sum(decoder.dedupe.gaps.values())
    errors["control_error"] = decoder.control.get("error", 0)
    # Ours, not the venue's: a book's buffer overflowed while it awaited a snapshot (md.book.gaps
    # counts only gaps in the venue's update-id chain).
    errors["book_buffer_overflow"] = sum(b.stats.buffer_overflows for b in books.values())
    rest = syncer.fetcher
    if rest is not None:
        errors.update(rest_rate_limited=rest.rate_limited, rest_errors=rest.errors)
    return ConnectorCounters(
        errors=errors,
        resyncs={s: b.stats.resyncs for s, b in books.items()},
        gaps={s: b.stats.gaps for s, b in books.items()},
        reconnects=supervisor.reconnects,
    )
