"""The CLI's renderings, as pure functions: health replies as fields, a context snapshot as lines."""

from __future__ import annotations

import io
from typing import Any

from services.cli.output import Output, clock, health_details, health_fields, health_line, snapshot_lines

FEED: dict[str, Any] = {
    "service": "connector_feed",
    "status": "degraded",
    "reasons": ["stale: no data for 12.0s (> 10s)", "resyncing"],
    "uptime_s": 61.7,
    "version": "0.1.0",
    "connector": {
        "connected": True,
        "last_ts": None,
        "queue_size": 3,
        "reconnection_attempts": 1,
        "connector_health": {
            "connected": True,
            "connections": [{"path": "/stream", "streams": 4, "age_s": 1.0}],
            "symbols": {"BTCUSDT": {"trades": "live", "depth": "resyncing"}},
            "subscribed_trades": ["BTCUSDT", "ETHUSDT"],
        },
    },
    "published": {"trade": 240, "depth": 60},
    "dropped": {"trades": 0, "depth": 2, "by_reason": {"queue_full": 2}},
    "rejected": {},
}


def test_health_fields_are_flat_keys_and_scalar_values() -> None:
    fields = dict(health_fields(FEED))

    assert fields["reasons"] == '"stale: no data for 12.0s (> 10s); resyncing"'
    assert fields["connected"] == "true"
    assert fields["queue"] == "3" and fields["reconnects"] == "1"
    assert fields["venue.connections.count"] == "1"
    assert fields["venue.symbols.BTCUSDT.depth"] == "resyncing"
    assert fields["venue.subscribed_trades"] == "BTCUSDT,ETHUSDT"
    assert fields["dropped.by_reason.queue_full"] == "2"
    assert "last_ts" not in fields  # None is left out
    assert not any(c in value for value in fields.values() for c in "{}[]'")


def test_a_health_line_is_one_line_of_words() -> None:
    line = health_line(FEED)

    assert "\n" not in line
    assert line.startswith("connector_feed degraded uptime=62s version=0.1.0 reasons=")
    assert " published.trade=240 published.depth=60 " in line


def test_no_reply_keeps_its_status_as_one_quoted_word() -> None:
    line = health_line({"service": "context", "status": "no reply", "reasons": ["TimeoutError"]})

    assert line == 'context "no reply" uptime=- version=- reasons=TimeoutError'


def test_health_details_group_fields_by_section() -> None:
    lines = health_details(FEED).splitlines()

    assert lines[0].startswith("reasons=") and lines[0].endswith(" connected=true queue=3 reconnects=1")
    assert "published.trade=240 published.depth=60" in lines


def test_snapshot_lines_summarise_the_book_and_the_last_trades() -> None:
    trade = {
        "side": "sell",
        "qty": "0.5",
        "price": "100.25",
        "trade_id": 7,
        "ts_event": 1_700_000_000_123_000_000,
    }
    snapshot = {
        "symbol": "BTCUSDT",
        "exchange": "binance",
        "last_price": "100.25",
        "book_synced": False,
        "best_bid": None,
        "recent_trades": [trade] * 12,
    }

    lines = snapshot_lines(snapshot, trades=3)

    assert lines[0].startswith("[bold]BTCUSDT[/] (binance)  last [bold]100.25[/]")
    assert "[red]not synced[/]" in lines[2] and "bid [green]-[/]" in lines[2]
    assert lines[3] == "last 3 trades (oldest first)"
    assert lines[4:] == ["  22:13:20.123  [red]SELL[/] 0.5 @ 100.25  id=7"] * 3


def test_a_pipe_gets_plain_unwrapped_lines() -> None:
    stream = io.StringIO()
    out = Output(stream)

    out.line("[green]" + "x" * 200 + "[/]")

    assert stream.getvalue() == "x" * 200 + "\n"
    assert not out.terminal


def test_clock_is_utc_milliseconds() -> None:
    assert clock(1_700_000_000_123_456_789) == "22:13:20.123"
    assert clock(None) == "-"
