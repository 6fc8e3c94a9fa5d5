"""Summarise a ``py-spy record -f raw`` profile (collapsed stacks) by function.

    python -m bench.pyspy_summary PROFILE.txt [--top 25]

Self: samples where the function was the innermost frame. Inclusive: samples where it was anywhere
on the stack (counted once per sample). Both as % of all samples of the main thread (the event
loop; ``--all-threads`` adds the others, e.g. the OpenTelemetry exporters').
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    """``name (path/to/module.py:123)`` -> ``module.py:name`` (lines merged)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{Path(match['file']).name}:{match['name']}"


def summarise(path: Path, main_only: bool = True) -> dict[str, Any]:
    """Samples, and self / inclusive counts per function, of the main thread's stacks (or all)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        frames = match[1].split(";")
        if main_only and frames[0].startswith("Thread._bootstrap"):
            continue
        count = int(match[2])
        functions = [_function(f) for f in frames[1:]] or ["?"]
        total += count
        own[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
    return {"samples": total, "self": own, "inclusive": inclusive}


def top(summary: dict[str, Any], n: int = 25) -> dict[str, list[tuple[str, float]]]:
    """The ``n`` heaviest functions by self and by inclusive samples, as % of all samples."""
    total = max(summary["samples"], 1)
    return {
        kind: [(name, round(100 * count / total, 1)) for name, count in summary[kind].most_common(n)]
        for kind in ("self", "inclusive")
    }


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` at 1 kHz until it exits (``pip install py-spy``)."""
    spy = subprocess.Popen(
        [
            *(str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-r", "1000"),
            *("-f", "raw", "-o", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the load starts
    return spy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--all-threads", action="store_true")
    args = parser.parse_args()
    summary = summarise(args.profile, not args.all_threads)
    print(f"{summary['samples']} samples")
    for kind, rows in top(summary, args.top).items():
        print(f"\n{kind}:")
        for name, pct in rows:
            print(f"  {pct:5.1f} %  {name}")


if __name__ == "__main__":
    main()
