"""Shared bench plumbing: machine facts, medians, a progress bar, a table, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console(stderr=True, highlight=False)


def cpu_busy_pct(interval_s: float = 0.5) -> float:
    """Host CPU busy % over a short interval (other jobs share these cores)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    total0, idle0 = read()
    time.sleep(interval_s)
    total1, idle1 = read()
    return round(100 * (1 - (idle1 - idle0) / max(total1 - total0, 1)), 1)


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host_busy_pct_before": cpu_busy_pct(),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


@contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        class Advance:
            def __call__(self, n: int = 1) -> None:
                bar.advance(task, n)

        yield Advance()


def show(title: str, columns: list[str], rows: list[list[Any]], width: int | None = None) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{v:,.0f}" if isinstance(v, float) and v > 100 else str(v) for v in row])
    Console(highlight=False, width=width).print(table)


def save(path: str | None, result: dict[str, Any]) -> None:
    text = json.dumps(result, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        console.print(f"saved {path}")
