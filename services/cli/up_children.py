"""``hftfeed up``'s child processes: start each service with a fresh log, find its own error, stop it.

Each run writes ``<log-dir>/<service>.log`` afresh and keeps the previous run's as
``<service>.log.1``, so what ``up`` shows of a log is always this run's. When a service fails,
``error_lines`` finds what the service itself said about it: the ``error: ...`` line (or the
``<service>: invalid settings:`` block) it prints before exiting, else its last error log event,
else the last line of a traceback, else its last line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from rich.console import Console

#: A child's time to stop after its SIGTERM before it is killed (the feed's own bound is 3 s).
CHILD_STOP_S = 5.0
#: At most this many lines of a service's own error block are shown.
MAX_ERROR_LINES = 12


@dataclass
class Child:
    service: str
    log_path: Path
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    reported_exit: bool = field(default=False)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def killed(self) -> bool:
        """Ended by a signal (from outside: it had no say)."""
        return (self.process.returncode or 0) < 0

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.1`` (replacing an older one)."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def start_child(service: str, log_dir: Path, env: dict[str, str]) -> Child:
    log_path = log_dir / f"{service}.log"
    rotate_log(log_path)
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
    )
    return Child(service, log_path, process, log_file)


def stop_children(children: list[Child], console: Console, grace_s: float = CHILD_STOP_S) -> None:
    """The producer first (the consumers then drain its last messages), then the consumers at once;
    each gets ``grace_s`` after its SIGTERM before it is killed (said on the console)."""
    for group in (children[:1], children[1:]):
        for child in group:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in group:
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.process.poll() is None:
                said = f"{child.service} did not stop within {grace_s:g} s of SIGTERM: killed"
                console.print(f"[yellow]{said}[/]")
                child.process.kill()
                child.process.wait()
            child.log_file.close()


def error_lines(text: str, service: str, last_line: bool = True) -> list[str]:
    """What the service said about its failure (see the module docstring); [] for an empty log,
    or when it said nothing of the kind and ``last_line`` is False (it was killed from outside)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith(("error: ", f"{service}: "))]
    if starts:
        block = [lines[starts[-1]]]
        for line in lines[starts[-1] + 1 :]:
            if not line[:1].isspace():
                break
            block.append(line)
        return block[:MAX_ERROR_LINES]
    for line in reversed(lines):
        event = _error_event(line)
        if event is not None:
            return [event]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        last = next((line for line in reversed(lines) if not line[:1].isspace()), None)
        if last is not None:
            return [last]
    return lines[-1:] if last_line else []


def _error_event(line: str) -> str | None:
    """A JSON log line at level error or critical, as ``event: error``."""
    if not line.startswith("{"):
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("level") not in ("error", "critical"):
        return None
    detail = record.get("error") or record.get("reason") or record.get("cause")
    return f"{record.get('event')}: {detail}" if detail else str(record.get("event"))
