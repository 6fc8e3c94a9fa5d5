"""Process plumbing for the end-to-end benches: JSON-line control pipes, CPU time, throwaway venvs.

A controlled child (the fake venue, the subscriber) reads one JSON command per line on stdin and
answers each with one JSON line on stdout (``serve_control``); the parent drives it with
``Child.call``, which never blocks longer than its timeout.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).parent.parent
CACHE = Path.home() / ".cache" / "hftfeed-bench"

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ChildError(RuntimeError):
    pass


class Child:
    """A child process answering JSON-line commands. Its stderr goes to ``log``."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file, cwd=ROOT, env=env
        )
        self._buffer = b""

    def read(self, timeout_s: float) -> dict[str, Any]:
        """The next JSON line; an ``error`` answer raises ``ChildError``."""
        reply: dict[str, Any] = orjson.loads(self.read_line(timeout_s))
        if "error" in reply:
            raise ChildError(str(reply["error"]))
        return reply

    def read_line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"no answer within {timeout_s}s; log {self.log}: {self.tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise ChildError(f"exited ({self.process.poll()}); log {self.log}: {self.tail()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def call(self, cmd: str, timeout_s: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
        self.process.stdin.flush()
        return self.read(timeout_s)

    def tail(self, lines: int = 15) -> str:
        self._log_file.flush()
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def close(self) -> None:
        stop(self.process)
        self._log_file.close()


def stop(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def serve_control(handlers: Mapping[str, Handler], hello: dict[str, Any]) -> None:
    """The child side: print ``hello``, then answer commands until ``quit`` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out: IO[bytes] = sys.stdout.buffer
    out.write(orjson.dumps(hello) + b"\n")
    out.flush()
    while line := await reader.readline():
        request = orjson.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            break
        try:
            reply = await handlers[cmd](request)
        except Exception as error:  # process boundary: report to the parent, keep serving
            reply = {"error": f"{cmd}: {error!r}"}
        out.write(orjson.dumps(reply) + b"\n")
        out.flush()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_venv(path: Path, packages: list[str]) -> Path:
    """A virtualenv at ``path`` holding ``packages`` (created or refreshed on demand); its python."""
    python = path / "bin" / "python"
    spec = path / ".bench-spec"
    wanted = " ".join(packages)
    if python.exists() and spec.exists() and spec.read_text() == wanted:
        return python
    print(f"creating {path} with {wanted} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    spec.write_text(wanted)
    return python
