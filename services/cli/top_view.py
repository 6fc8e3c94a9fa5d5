"""``hftfeed top``'s screen: a snapshot (``top_model``) -> rich renderables. Pure: no I/O, no clock."""

from __future__ import annotations

import io
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from services.cli.output import clock
from services.cli.top_model import (
    errors_by_reason,
    feed_book_state,
    instrument_ids,
    queue_size,
)

SERVICES = ("connector_feed", "strategy_engine", "context")
_STYLE = {"ok": "green", "degraded": "yellow", "down": "red", "no reply": "red"}
_STATE_STYLE = {"live": "green", "synced": "green", "resyncing": "yellow", "stale": "yellow"}
LADDERS = 4
LADDER_LEVELS = 5


def _num(value: object, digits: int = 1) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return escape(str(value))


def aligned(values: list[str | None]) -> list[str]:
    """Decimal strings cut to the decimals the widest of them needs, so a column lines up
    (``["49975.04000000", "49975.10000000"]`` -> ``["49975.04", "49975.10"]``): the same numbers,
    narrower. Anything else is shown as it is (``None`` as ``-``)."""
    numeric = [v for v in values if v and v.count(".") <= 1 and v.replace(".", "", 1).lstrip("-").isdigit()]
    decimals = max((len(v.partition(".")[2].rstrip("0")) for v in numeric), default=0)
    out = []
    for value in values:
        if value not in numeric:
            out.append(escape(value) if value else "-")
            continue
        assert value is not None
        whole, _, fraction = value.partition(".")
        fraction = fraction[:decimals]
        out.append(f"{whole}.{fraction:0<{decimals}}" if decimals else whole)
    return out


def _ms(value: float) -> str:
    """A lag in ms; long ones (a replay's recorded times) in s, h or d."""
    if abs(value) < 10_000:
        return f"{value:.2f}"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("s", 1_000)):
        if abs(value) >= size:
            return f"{value / size:.0f}{unit}"
    return f"{value:.0f}"  # pragma: no cover - every value >= 10 s has a unit


def _styled(state: str | None) -> str:
    if not state:
        return "-"
    return f"[{_STATE_STYLE.get(state, _STYLE.get(state, 'red'))}]{escape(state)}[/]"


def render(snapshot: dict[str, Any]) -> RenderableType:
    """The whole screen."""
    return Group(
        _header(snapshot),
        _services(snapshot),
        _connector(snapshot),
        _instruments(snapshot),
        Columns(_ladders(snapshot), padding=(0, 2)),
        Columns([_signals(snapshot), _errors(snapshot)], padding=(0, 2)),
    )


def render_text(snapshot: dict[str, Any], width: int = 220) -> str:
    """The screen as plain text (no colour), for a pipe or a file."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(render(snapshot))
    return buffer.getvalue()


def _header(snapshot: dict[str, Any]) -> Text:
    return Text.from_markup(
        f"[bold]hftfeed top[/]  {escape(str(snapshot.get('url', '')))}  {clock(snapshot.get('ts'))} UTC"
        f"  every {snapshot.get('interval_s', 0):g}s  [dim](Ctrl-C quits)[/]"
    )


def _services(snapshot: dict[str, Any]) -> Table:
    health, rates = snapshot.get("health") or {}, snapshot.get("rates") or {}
    table = Table(title="services", title_justify="left", expand=False)
    for column in ("service", "status", "uptime", "in/s", "out/s", "queue", "nats", "why"):
        table.add_column(column, no_wrap=column != "why", justify="right" if "/" in column else "left")
    for service in SERVICES:
        reply = health.get(service) or {"status": "no reply"}
        status = str(reply.get("status", "?"))
        nats = reply.get("nats") or {}
        nats_text = (
            "-"
            if not nats
            else ("connected" if nats.get("connected") else "[red]disconnected[/]")
            + (f" reconnects={nats['reconnects']}" if nats.get("reconnects") else "")
        )
        rate = rates.get(service) or {}
        uptime = reply.get("uptime_s")
        table.add_row(
            service,
            f"[{_STYLE.get(status, 'red')}]{escape(status)}[/]",
            f"{uptime:.0f}s" if isinstance(uptime, int | float) else "-",
            _num(rate.get("in")),
            _num(rate.get("out")),
            _num(queue_size(service, reply)),
            nats_text,
            escape("; ".join(map(str, reply.get("reasons") or []))) or "-",
        )
    return table


def _connector(snapshot: dict[str, Any]) -> RenderableType:
    feed = (snapshot.get("health") or {}).get("connector_feed") or {}
    connector = feed.get("connector") or {}
    venue = connector.get("connector_health") or {}
    if not connector:
        return Text("connector: no reply from connector_feed", style="red")
    parts = [
        "[green]connected[/]" if connector.get("connected") else "[red]not connected[/]",
        f"events {_num(venue.get('event_counter'))}",
        f"queue {_num(connector.get('queue_size'))}",
        f"reconnection attempts {_num(connector.get('reconnection_attempts'))}",
        f"last event {escape(str(connector.get('last_ts') or '-'))}",
    ]
    if venue.get("market"):
        links = venue.get("connections") or []
        parts.insert(0, f"binance {escape(str(venue['market']))}")
        parts.append(
            f"connections {len(links)} rotations {_num(venue.get('rotations'))}"
            f" reconnects {_num(venue.get('reconnects'))} half-open {_num(venue.get('half_open'))}"
        )
    if feed.get("feed_run"):
        parts.append(f"run {escape(str(feed['feed_run']))}")
    lines: list[RenderableType] = [Text.from_markup("[bold]connector[/]  " + "  ".join(parts))]
    replay = venue.get("replay")
    if isinstance(replay, dict):
        percent = float(replay.get("percent") or 0.0)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            "replay",
            ProgressBar(total=100.0, completed=percent, width=40),
            f"{percent:.1f}%  lines {_num(replay.get('lines'))}"
            f"  at {escape(str(replay.get('position') or '-'))}"
            + ("  [green]finished[/]" if replay.get("finished") else ""),
        )
        lines.append(bar)
    return Group(*lines)


def _lag(lag: dict[str, Any] | None) -> str:
    if not lag:
        return "-"
    return f"{_ms(lag['p50'])} / {_ms(lag['p99'])}"


def _instruments(snapshot: dict[str, Any]) -> Table:
    seen = snapshot.get("instruments") or {}
    context = ((snapshot.get("health") or {}).get("context") or {}).get("symbols") or {}
    table = Table(title="instruments (lag ms: p50 / p99 over the last refresh)", title_justify="left")
    for column in ("symbol", "feed", "book (top)", "book (context)", "last", "bid", "ask", "spread"):
        table.add_column(column, no_wrap=True)
    for column in ("trades/s", "depth/s", "venue→feed lag", "feed→here lag"):
        table.add_column(column, justify="right", no_wrap=True)
    for symbol in instrument_ids(snapshot):
        info = seen.get(symbol) or {}
        book = info.get("book") or {}
        bids, asks = book.get("bids") or [], book.get("asks") or []
        bid, ask = (bids[0][0] if bids else None), (asks[0][0] if asks else None)
        spread = _spread(bid, ask)
        trade = info.get("last_trade") or {}
        lag = info.get("lag_ms") or {}
        levels = book.get("levels")
        table.add_row(
            escape(symbol),
            _styled(feed_book_state(snapshot, symbol)),
            _styled(book.get("state")) + (f" {levels} lv" if isinstance(levels, int) else ""),
            _styled((context.get(symbol) or {}).get("book")),
            *aligned([trade.get("price"), bid, ask]),
            aligned([spread])[0],
            _num(info.get("trades_per_s")),
            _num(info.get("depth_per_s")),
            _lag(lag.get("venue")),
            _lag(lag.get("bus")),
        )
    return table


def _spread(bid: str | None, ask: str | None) -> str | None:
    """ask - bid, exactly (None when either side is empty)."""
    if bid is None or ask is None:
        return None
    try:
        return format(Decimal(ask) - Decimal(bid), "f")
    except InvalidOperation:
        return None


def _ladders(snapshot: dict[str, Any]) -> list[RenderableType]:
    """A small top-of-book ladder per instrument (from top's own book keeper)."""
    ladders: list[RenderableType] = []
    for symbol, info in sorted((snapshot.get("instruments") or {}).items())[:LADDERS]:
        book = info.get("book") or {}
        bids, asks = book.get("bids") or [], book.get("asks") or []
        table = Table(title=f"{escape(symbol)} ({_styled(book.get('state'))})", title_justify="left")
        for column, style in (("bid qty", "green"), ("bid", "green"), ("ask", "red"), ("ask qty", "red")):
            table.add_column(column, justify="right", style=style, no_wrap=True)
        rows = range(LADDER_LEVELS)
        prices = aligned([side[i][0] if i < len(side) else None for side in (bids, asks) for i in rows])
        sizes = aligned([side[i][1] if i < len(side) else None for side in (bids, asks) for i in rows])
        n = LADDER_LEVELS
        for i in rows:
            table.add_row(sizes[i], prices[i], prices[n + i], sizes[n + i])
        ladders.append(table)
    return ladders


def _signals(snapshot: dict[str, Any]) -> RenderableType:
    table = Table(title="latest signals", title_justify="left")
    for column in ("time", "strategy", "symbol", "side", "strength", "reason"):
        table.add_column(column, no_wrap=column != "reason", max_width=60 if column == "reason" else None)
    for signal in snapshot.get("signals") or []:
        side = str(signal.get("side", "?"))
        colour = {"buy": "green", "sell": "red"}.get(side, "white")
        table.add_row(
            clock(signal.get("ts")),
            escape(str(signal.get("strategy", "?"))),
            escape(str(signal.get("symbol", "?"))),
            f"[{colour}]{escape(side.upper())}[/]",
            _num(signal.get("strength")),
            escape(str(signal.get("reason", ""))),
        )
    if not snapshot.get("signals"):
        table.add_row("-", "-", "-", "-", "-", "none yet")
    return table


def _errors(snapshot: dict[str, Any]) -> RenderableType:
    rows = errors_by_reason(snapshot.get("health") or {})
    if not rows:
        return Panel("[green]no errors counted[/]", title="errors by reason", expand=False)
    table = Table(title="errors by reason", title_justify="left")
    for column in ("service", "what", "reason", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for service, what, reason, count in rows[:12]:
        table.add_row(service, escape(what), escape(reason) or "-", f"{count:,}")
    return table
