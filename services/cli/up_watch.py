"""``hftfeed up``: is the stack really up? Readiness, the banner's verdict, and watching it run.

- ``wait_started``: each service, in start order, must answer its health request before the
  ready timeout; one that exits first, or never answers, is a ``Failure`` with its own error lines.
- ``settle``: once all answer, their health is asked again until every one is ``ok``, one has
  been ``down`` for ``DOWN_FOR_S``, or ``SETTLE_S`` passed (a feed syncs its books, the consumers
  see their first data), so the banner reports a settled state, not the first second's "no data
  yet".
- ``verdict``: the banner's headline and one line per service that is not ``ok``, with every
  reason health gives (the cause of ``down``: the host that failed to resolve, the venue's error).
- ``HealthWatch``: while the stack runs, a change of any service's status is printed with its
  reasons.

Nothing here is cut at a width: long reasons and error lines are printed whole.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from rich.console import Console
from rich.markup import escape

from services.cli.client import ask_health
from services.cli.up_children import Child, error_lines

#: How long the banner waits for every service to be ``ok`` once all answer.
SETTLE_S = 10.0
#: A service ``down`` this long while settling is reported at once (a venue out of reach).
DOWN_FOR_S = 3.0
#: How often the running stack's health is asked (status changes are printed).
WATCH_EVERY_S = 2.0
_STYLE = {"ok": "green", "degraded": "yellow"}


@dataclass(frozen=True)
class Failure:
    """A service that did not start or stopped: what happened and what it said."""

    service: str
    what: str
    lines: list[str]
    log_path: Path


def failure_of(child: Child, what: str | None = None) -> Failure:
    return Failure(
        child.service,
        what or child.exit_description(),
        error_lines(child.log_text(), child.service, last_line=not child.killed),
        child.log_path,
    )


def print_failure(failure: Failure, console: Console) -> None:
    if not failure.lines:
        console.print(f"[red]✗ {failure.service} {escape(failure.what)}[/]; it logged no error")
    else:
        console.print(f"[red]✗ {failure.service} {escape(failure.what)}[/]; it said:")
    for line in failure.lines:
        console.print(f"    {line}", markup=False, highlight=False)
    console.print(f"  (its whole log: {failure.log_path})", markup=False, highlight=False)


async def wait_started(
    children: list[Child], nc: Client, timeout_s: float, console: Console, keep_going: bool
) -> list[Failure]:
    """Each service answers health within ``timeout_s``, in start order; the failures (printed).
    Without ``keep_going`` it returns at the first failure."""
    failures: list[Failure] = []
    for child in children:
        deadline = time.monotonic() + timeout_s
        while True:
            if child.process.poll() is not None:
                child.reported_exit = True
                failures.append(failure_of(child))
                break
            reply = await ask_health(nc, child.service, 0.5)
            if reply["status"] != "no reply":
                pid = child.process.pid
                console.print(f"  [green]●[/] {child.service:16} started   pid {pid:<7} log {child.log_path}")
                break
            if time.monotonic() > deadline:
                failures.append(failure_of(child, f"did not answer its health request within {timeout_s:g}s"))
                break
            await asyncio.sleep(0.1)
        if failures and failures[-1].service == child.service:
            print_failure(failures[-1], console)
            if not keep_going:
                break
    return failures


async def health_of(nc: Client, children: list[Child]) -> dict[str, dict[str, Any]]:
    """Every running service's health reply (``no reply`` records included)."""
    running = [c.service for c in children if c.process.poll() is None]
    replies = await asyncio.gather(*(ask_health(nc, s, 1.0) for s in running))
    return dict(zip(running, replies, strict=True))


async def settle(nc: Client, children: list[Child], settle_s: float = SETTLE_S) -> dict[str, dict[str, Any]]:
    """Health, asked until every service is ``ok``, one (more) exits, one has been ``down`` for
    ``DOWN_FOR_S`` (it will not mend in seconds: say so now), or ``settle_s`` passed."""
    started = time.monotonic()
    down_since: dict[str, float] = {}
    while True:
        reports = await health_of(nc, children)
        now = time.monotonic()
        for name, report in reports.items():
            if report["status"] in ("down", "no reply"):
                down_since.setdefault(name, now)
            else:
                down_since.pop(name, None)
        if (
            any(c.process.poll() is not None and not c.reported_exit for c in children)
            or all(r["status"] == "ok" for r in reports.values())
            or any(now - since >= DOWN_FOR_S for since in down_since.values())
            or now - started > settle_s
        ):
            return reports
        await asyncio.sleep(0.2)


def reasons_of(report: dict[str, Any]) -> str:
    reasons = [str(r) for r in report.get("reasons") or []]
    return "; ".join(reasons) if reasons else "no reason given"


def verdict(reports: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """The banner's headline (rich markup) and a line per service that is not ``ok``."""
    statuses = {name: str(r.get("status")) for name, r in reports.items()}
    lines = [
        f"  [{_STYLE.get(status, 'red')}]●[/] {name} {status}: {escape(reasons_of(reports[name]))}"
        for name, status in statuses.items()
        if status != "ok"
    ]
    if all(s == "ok" for s in statuses.values()):
        return "[green]stack is up.[/]", lines
    if all(s in ("ok", "degraded") for s in statuses.values()):
        return "[yellow]stack is up, degraded:[/]", lines
    return "[red]stack is running, but not healthy:[/]", lines


class HealthWatch:
    """Prints each change of a service's status while the stack runs."""

    def __init__(self, nc: Client, children: list[Child], console: Console) -> None:
        self.nc = nc
        self.children = children
        self.console = console
        self.last: dict[str, str] = {}
        self._next = 0.0

    def seed(self, reports: dict[str, dict[str, Any]]) -> None:
        self.last = {name: str(r.get("status")) for name, r in reports.items()}
        self._next = time.monotonic() + WATCH_EVERY_S

    async def poll(self) -> None:
        if time.monotonic() < self._next or not self.nc.is_connected:
            return
        self._next = time.monotonic() + WATCH_EVERY_S
        for name, report in (await health_of(self.nc, self.children)).items():
            status = str(report.get("status"))
            before = self.last.get(name)
            self.last[name] = status
            if before is None or before == status:
                continue
            reasons = "" if status == "ok" else f": {escape(reasons_of(report))}"
            self.console.print(
                f"[{_STYLE.get(status, 'red')}]{name}: {before} → {status}[/]{reasons}", highlight=False
            )
