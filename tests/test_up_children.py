"""What `hftfeed up` shows of a failed service (its own words), its logs per run, and its verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.cli.up_children import error_lines, rotate_log
from services.cli.up_watch import verdict

JSON_INFO = '{"level":"info","event":"service_started","service":"context"}'
JSON_ERROR = '{"level":"error","event":"service_failed","error":"boom: the reason","service":"context"}'


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            f"{JSON_INFO}\n{JSON_ERROR}\nerror: STRATEGIES: unknown strategy 'x'\n",
            ["error: STRATEGIES: unknown strategy 'x'"],
            id="its-error-line",
        ),
        pytest.param(
            "context: invalid settings:\n  SYMBOLS: bad\n  LOG_LEVEL: bad\n",
            ["context: invalid settings:", "  SYMBOLS: bad", "  LOG_LEVEL: bad"],
            id="a-settings-block",
        ),
        pytest.param(
            f"{JSON_INFO}\n{JSON_ERROR}\n{JSON_INFO}\n", ["service_failed: boom: the reason"], id="json"
        ),
        pytest.param(
            "Traceback (most recent call last):\n  File \"x.py\", line 1\n    raise\nKeyError: 'k'\n",
            ["KeyError: 'k'"],
            id="a-traceback",
        ),
        pytest.param(f"{JSON_INFO}\nsomething odd\n\n", ["something odd"], id="its-last-line"),
        pytest.param("", [], id="nothing"),
    ],
)
def test_the_services_own_words_are_found(log: str, expected: list[str]) -> None:
    assert error_lines(log, "context") == expected


def test_a_service_killed_from_outside_said_nothing() -> None:
    assert error_lines(f"{JSON_INFO}\n", "context", last_line=False) == []


def test_the_previous_runs_log_is_kept_once(tmp_path: Path) -> None:
    log = tmp_path / "feed.log"
    for run in ("one", "two", "three"):
        rotate_log(log)
        log.write_text(run)

    assert log.read_text() == "three"
    assert (tmp_path / "feed.log.1").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.log", "feed.log.1"]


def _report(status: str, *reasons: str) -> dict[str, Any]:
    return {"status": status, "reasons": list(reasons)}


def test_the_verdict_names_what_is_not_ok_and_why() -> None:
    cause = "not connected: cannot resolve stream.binance.com (Name or service not known)"

    all_ok = verdict({"a": _report("ok"), "b": _report("ok")})
    degraded = verdict({"a": _report("ok"), "b": _report("degraded", "no data yet", "stale: 3s")})
    down = verdict({"a": _report("down", cause), "b": _report("degraded")})

    assert all_ok == ("[green]stack is up.[/]", [])
    assert degraded == (
        "[yellow]stack is up, degraded:[/]",
        ["  [yellow]●[/] b degraded: no data yet; stale: 3s"],
    )
    assert down == (
        "[red]stack is running, but not healthy:[/]",
        [f"  [red]●[/] a down: {cause}", "  [yellow]●[/] b degraded: no reason given"],
    )
