"""``hftfeed up`` gives each child time to stop (the feed needs up to 3 s) and says when it must kill one."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from services.cli.up_children import CHILD_STOP_S, Child, stop_children

#: A child that takes ``delay`` seconds to stop after SIGTERM, then exits 0 (or ignores SIGTERM).
CHILD = """
import signal, sys, time
delay = float(sys.argv[1])
def stop(*_):
    if delay < 0:
        return
    time.sleep(delay)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def child(tmp_path: Path, service: str, delay: float) -> Child:
    log_path = tmp_path / f"{service}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(delay)], stdout=subprocess.PIPE, stderr=log_file
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return Child(service, log_path, process, log_file)


def test_a_feed_that_needs_3_s_to_stop_is_given_the_time(tmp_path: Path) -> None:
    stack = (("connector_feed", 2.9), ("strategy_engine", 0.1), ("context", 0.1))
    children = [child(tmp_path, service, delay) for service, delay in stack]
    out = io.StringIO()

    started = time.monotonic()
    stop_children(children, Console(file=out, highlight=False))

    assert [c.process.returncode for c in children] == [0, 0, 0]
    assert "killed" not in out.getvalue()
    assert 2.9 <= time.monotonic() - started < CHILD_STOP_S
    assert CHILD_STOP_S > 3.0


def test_a_child_that_does_not_stop_is_killed_and_we_say_so(tmp_path: Path) -> None:
    children = [child(tmp_path, "connector_feed", 0.1), child(tmp_path, "context", -1)]  # ignores SIGTERM
    out = io.StringIO()

    stop_children(children, Console(file=out, highlight=False, width=200), grace_s=0.5)

    assert children[0].process.returncode == 0 and children[1].process.returncode == -9
    assert out.getvalue().strip() == "context did not stop within 0.5 s of SIGTERM: killed"
