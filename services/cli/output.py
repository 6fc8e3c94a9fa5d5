"""Standard output for people and for pipes.

In a terminal: colour and tables. Anywhere else (a pipe, a file): plain text, one record per line,
never cut or wrapped at a width, flushed line by line so ``| grep`` sees each record at once. When the
reader goes away (``| head -1``), the command ends quietly: no traceback, the rest is dropped, and a
``sub`` waiting for its next message notices at once (it watches the pipe).
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.text import Text


class Output:
    """stdout (or ``stream``), written one record at a time; ``closed`` once the reader is gone."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty()
        self.closed = False
        self._console = Console(file=self.stream, highlight=False) if self.terminal else None
        self._watched: int | None = None

    def line(self, markup: str) -> bool:
        """One record in rich markup: styled in a terminal, plain text elsewhere. False once closed."""
        console = self._console
        if console is None:
            return self.write(Text.from_markup(markup).plain + "\n")
        return self._guard(lambda: console.print(markup))

    def show(self, renderable: RenderableType) -> bool:
        """A table or other rich renderable, in a terminal (pipes get lines from the caller instead)."""
        console = self._console
        return self._guard(lambda: console.print(renderable)) if console is not None else not self.closed

    def write(self, text: str) -> bool:
        """Raw text, as it is (JSON lines), flushed at once."""
        return self._guard(lambda: (self.stream.write(text), self.stream.flush()))

    def _guard(self, write: Callable[[], object]) -> bool:
        if self.closed:
            return False
        try:
            write()
        except BrokenPipeError:
            self._reader_gone()
        return not self.closed

    def _reader_gone(self) -> None:
        """Point the file descriptor at /dev/null, so the interpreter's last flush is silent too."""
        self.closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        finally:
            os.close(devnull)

    def watch_reader(self, loop: asyncio.AbstractEventLoop, gone: Callable[[], None]) -> None:
        """Call ``gone`` as soon as the reader of a pipe closes it, before anything is written.

        The write end of a pipe polls as an error once its reader has closed; only pipes are watched
        (a terminal's or a socket's readability means something else, and a file cannot be polled)."""
        try:
            fd = self.stream.fileno()
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except (OSError, ValueError):
            return
        if not is_pipe:
            return

        def on_event() -> None:
            loop.remove_reader(fd)
            self._watched = None
            self._reader_gone()
            gone()

        loop.add_reader(fd, on_event)
        self._watched = fd

    def stop_watching(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watched is not None:
            loop.remove_reader(self._watched)
            self._watched = None


def clock(ts_ns: object) -> str:
    """``HH:MM:SS.mmm`` (UTC) of integer nanoseconds, or ``-``."""
    if not isinstance(ts_ns, int):
        return "-"
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]


# --- health details as fields --------------------------------------------------------------------

_OWN_COLUMNS = ("service", "status", "reasons", "uptime_s", "version")
_ALIASES = {"queue_size": "queue", "reconnection_attempts": "reconnects", "connector_health": "venue"}


def _scalar(value: object) -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    return f'"{text}"' if any(c.isspace() for c in text) or not text else text


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            name = _ALIASES.get(str(key), str(key))
            _flatten(f"{prefix}.{name}" if prefix else name, item, out)
    elif isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            out.append((prefix, ",".join(str(item) for item in value) or "-"))
        else:
            out.append((f"{prefix}.count", str(len(value))))
    elif value is not None:
        out.append((prefix, _scalar(value)))


def health_fields(reply: dict[str, Any]) -> list[tuple[str, str]]:
    """A health reply's own sections as ``(key, value)`` pairs: nested objects become dotted keys
    (``published.trade``), the feed's ``connector`` section is unwrapped (``connected``, ``queue``)."""
    fields: list[tuple[str, str]] = []
    reasons = reply.get("reasons") or []
    if reasons:
        fields.append(("reasons", _scalar("; ".join(map(str, reasons)))))
    for key, value in reply.items():
        if key in _OWN_COLUMNS:
            continue
        _flatten("" if key == "connector" else _ALIASES.get(key, key), value, fields)
    return fields


def health_line(reply: dict[str, Any]) -> str:
    """One service's health as one line of ``key=value`` fields (for pipes: grep, awk, cut)."""
    uptime = reply.get("uptime_s")
    head = [
        str(reply.get("service", "?")),
        _scalar(reply.get("status", "?")),
        f"uptime={uptime:.0f}s" if isinstance(uptime, int | float) else "uptime=-",
        f"version={reply.get('version', '-')}",
    ]
    return " ".join(head + [f"{key}={value}" for key, value in health_fields(reply)])


def health_details(reply: dict[str, Any]) -> str:
    """The same fields for a table cell: one line per group (the key less its last part)."""
    lines: dict[str, list[str]] = {}
    for key, value in health_fields(reply):
        lines.setdefault(key.rpartition(".")[0], []).append(f"{key}={value}")
    return "\n".join(" ".join(parts) for parts in lines.values()) or "-"


# --- a context snapshot, readable ----------------------------------------------------------------


def snapshot_lines(snapshot: dict[str, Any], trades: int = 10) -> list[str]:
    """A ContextSnapshot as a few lines of rich markup: price, flow, VWAP, book, the latest trades."""
    get = snapshot.get
    book = "[green]synced[/]" if get("book_synced") else "[red]not synced[/]"
    lines = [
        f"[bold]{get('symbol')}[/] ({get('exchange') or '-'})  last [bold]{get('last_price') or '-'}[/]"
        f" at {clock(get('last_trade_ts'))}",
        f"trades  {get('trade_count')} seen, {get('trades_per_minute')}/min"
        f" ({float(get('trades_per_second') or 0):.2f}/s)   VWAP {get('vwap') or '-'}"
        f" over {get('vwap_window_s')} s ({get('vwap_trades')} trades)",
        f"book    {book} u={get('book_update_id') or '-'}  bid [green]{get('best_bid') or '-'}[/]"
        f" | ask [red]{get('best_ask') or '-'}[/]  spread {get('spread') or '-'}"
        f"  levels {get('bid_levels')}/{get('ask_levels')}  gaps {get('book_gaps')}",
    ]
    recent = list(get("recent_trades") or [])[-trades:]
    lines.append(f"last {len(recent)} trades (oldest first)" if recent else "no trades yet")
    for trade in recent:
        colour = "green" if trade.get("side") == "buy" else "red"
        lines.append(
            f"  {clock(trade.get('ts_event'))}  [{colour}]{str(trade.get('side', '?')).upper():4}[/]"
            f" {trade.get('qty')} @ {trade.get('price')}  id={trade.get('trade_id')}"
        )
    return lines
