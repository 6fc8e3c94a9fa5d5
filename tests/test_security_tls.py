"""TLS on the bus: forced when configured, bounded when it fails, mutual for identities; the whole
stack over it (`hftfeed up --secure`, real processes); and the optional accounts layout."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from schemas import ContextSnapshot, subjects
from services.common.bus import Bus, BusConnectError, settled
from services.common.natsauth import NatsSecurity
from services.common.natsserver import ACCOUNTS_CONFIG, free_port, host_port, is_listening
from services.common.pki import ensure_pki
from tests.helpers import collect, eventually
from tests.secure_nats import SERVICES, SecureNats, identity_security, running_secure_nats

ROOT = Path(__file__).parent.parent


async def test_a_tls_url_never_falls_back_to_clear_text(nats_url: str, tmp_path: Path) -> None:
    host, port = host_port(nats_url)  # the plain (no TLS) test server
    ca = ensure_pki(tmp_path, ["client"])["client"].ca
    started = time.monotonic()

    with pytest.raises(BusConnectError) as refused:
        await Bus.connect(f"tls://{host}:{port}", "tls-client", 5.0, NatsSecurity(tls_ca=ca))

    assert "TLS handshake failed" in str(refused.value)
    assert time.monotonic() - started < 2.0


async def test_without_handshake_first_nats_py_would_talk_in_clear_text(
    nats_url: str, tmp_path: Path
) -> None:
    """Why TLS starts first: nats-py alone upgrades only when the server's INFO asks for it."""
    host, port = host_port(nats_url)
    ca = ensure_pki(tmp_path, ["client"])["client"].ca

    bus = await Bus.connect(
        f"tls://{host}:{port}", "downgraded", 3.0, NatsSecurity(tls_ca=ca, tls_handshake_first=False)
    )
    try:
        assert bus.is_connected  # in clear text, although the URL said tls://
    finally:
        await bus.drain()


async def test_a_server_certificate_from_an_untrusted_ca_fails_fast(
    secure_nats: SecureNats, tmp_path: Path
) -> None:
    other_ca = ensure_pki(tmp_path, ["feed"])["feed"]
    security = secure_nats.security("connector_feed", tls_ca=other_ca.ca)
    started = time.monotonic()

    with pytest.raises(BusConnectError) as refused:  # nats-py alone would hang here (nats.py#718)
        await Bus.connect(secure_nats.url, "feed", 10.0, security)

    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert time.monotonic() - started < 2.0


async def test_a_wrong_server_name_fails_fast(secure_nats: SecureNats) -> None:
    security = secure_nats.security("connector_feed", tls_hostname="nats.example.org")

    with pytest.raises(BusConnectError) as refused:
        await Bus.connect(secure_nats.url, "feed", 10.0, security)

    assert "TLS handshake failed" in str(refused.value)


async def test_clients_that_upgrade_after_info_are_served_too(secure_nats: SecureNats, unique: str) -> None:
    """The server's handshake_first is `auto`: the nats CLI and other clients that wait for INFO work."""
    bus = await secure_nats.bus("reader", tls_handshake_first=False)
    try:
        received = await collect(bus.nc, subjects.trades(unique))
        feed = await secure_nats.bus("connector_feed")
        await feed.publish(subjects.trades(unique), b"x")
        await eventually(lambda: len(received) == 1)
        await feed.drain()
    finally:
        await bus.drain()


async def test_an_importing_account_reads_market_data_and_cannot_publish_into_it(
    tmp_path: Path, unique: str
) -> None:
    with running_secure_nats(tmp_path, ACCOUNTS_CONFIG, clients=("trader",)) as nats:
        feed, reader, trader = [await nats.bus(name) for name in ("connector_feed", "reader", "trader")]
        try:
            market_seen = await collect(reader.nc, "md.>")  # in MARKET
            trading_seen = await collect(trader.nc, "md.>")  # in TRADING, through the import

            await feed.publish(subjects.trades(unique), b"real")
            await trader.publish(subjects.trades(unique), b"forged")
            await eventually(lambda: trader.stats.permission_violations == 1)
            await eventually(lambda: len(trading_seen) >= 1 and len(market_seen) >= 1)
            await settled(reader.nc)
            await settled(trader.nc)
        finally:
            for bus in (feed, reader, trader):
                await bus.drain()

    assert [m.data for m in market_seen] == [b"real"]
    assert [m.data for m in trading_seen] == [b"real"]
    assert trader.stats.permission_violations == 1


def _child_env(url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATA_SOURCE", "CONNECTOR_", "STUB_", "SYMBOLS", "NATS_"))
    }
    env.update(
        {"NATS_URL": url, "STUB_TRADES_PER_S": "50", "STUB_DEPTH_PER_S": "10", "PYTHONPATH": str(ROOT)}
    )
    return env


async def test_hftfeed_up_secure_runs_the_stack_over_mutual_tls_with_one_identity_each(
    tmp_path: Path,
) -> None:
    port = free_port()
    pki = tmp_path / "pki"
    out_path = tmp_path / "up.out"
    with out_path.open("wb") as out:
        up = subprocess.Popen(  # noqa: ASYNC220  (a plain child process, observed from outside)
            [sys.executable, "-m", "services.cli", "up", "--secure", "--pki-dir", str(pki)],
            env=_child_env(f"nats://127.0.0.1:{port}"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while "stack is up" not in out_path.read_text():
            assert up.poll() is None and time.monotonic() < deadline, out_path.read_text()
            await asyncio.sleep(0.1)
        url = f"tls://127.0.0.1:{port}"
        ids = ensure_pki(pki)  # the identities up made (kept, not re-issued)
        reader = await Bus.connect(url, "reader", 3.0, identity_security(ids["reader"]))
        trades = await collect(reader.nc, subjects.trades("BTCUSDT"))
        await eventually(lambda: len(trades) >= 5, timeout_s=20)
        forged = {name: await Bus.connect(url, name, 3.0, identity_security(ids[name])) for name in SERVICES}
        for name in ("strategy_engine", "context"):
            await forged[name].publish(subjects.trades("BTCUSDT"), b"forged")
        await eventually(
            lambda: all(forged[n].stats.permission_violations == 1 for n in ("strategy_engine", "context"))
        )
        await settled(reader.nc)
        health = {
            name: orjson.loads((await reader.request(subjects.health(name), timeout_s=2)).data)
            for name in SERVICES
        }
        snapshot = ContextSnapshot.model_validate_json(
            (await reader.request(subjects.context_snapshot("BTCUSDT"), timeout_s=2)).data
        )
        for bus in (reader, *forged.values()):
            await bus.drain()
        with pytest.raises(BusConnectError):  # and nobody gets in without a certificate
            await Bus.connect(url, "anonymous", 3.0, NatsSecurity(tls_ca=ids["reader"].ca))
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(15)
        except subprocess.TimeoutExpired:
            up.kill()
    output = out_path.read_text()

    assert up.returncode == 0, output
    assert b"forged" not in [m.data for m in trades]
    assert {name: h["status"] in ("ok", "degraded") for name, h in health.items()} == dict.fromkeys(
        SERVICES, True
    )
    assert {name: h["permission_violations"] for name, h in health.items()} == dict.fromkeys(SERVICES, 0)
    assert snapshot.trade_count > 0
    assert "PRIVATE KEY" not in output and str(ids["reader"].key) not in output
    assert not is_listening("127.0.0.1", port)
