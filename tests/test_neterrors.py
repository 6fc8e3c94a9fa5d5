"""Connection errors described in one line that names the peer, from real failed connects."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from picows import WSListener, ws_connect

from services.common.natsserver import free_port
from services.common.neterrors import describe_connect_error, peer
from services.common.pki import ensure_pki

RESTRICTED = "Service unavailable from a restricted location according to 'b. Eligibility'."


async def _error_of(url: str) -> BaseException:
    try:
        await asyncio.wait_for(ws_connect(WSListener, url), 10)
    except Exception as error:
        return error
    raise AssertionError(f"{url} connected")


@pytest.fixture
async def refusing_venue() -> AsyncIterator[str]:
    """An HTTP server that refuses every websocket upgrade as Binance does from a blocked region."""

    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"code": 0, "msg": RESTRICTED}, status=451)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>\nforbidden\n</html>", status=403)

    app = web.Application()
    app.router.add_get("/stream", refuse)
    app.router.add_get("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_name_that_does_not_resolve_is_named() -> None:
    error = await _error_of("wss://nosuch.invalid:9443/stream")

    assert isinstance(error, socket.gaierror)
    assert describe_connect_error(error, "wss://nosuch.invalid:9443").startswith(
        "cannot resolve nosuch.invalid ("
    )


async def test_a_refused_connection_names_host_and_port() -> None:
    url = f"ws://127.0.0.1:{free_port()}"

    error = await _error_of(f"{url}/stream")

    assert describe_connect_error(error, url) == f"{url.removeprefix('ws://')} refused the connection"


async def test_a_refused_upgrade_gives_the_status_and_the_venues_own_message(refusing_venue: str) -> None:
    error = await _error_of(f"ws://{refusing_venue}/stream?streams=btcusdt@trade")

    described = describe_connect_error(error, f"ws://{refusing_venue}")

    assert described == f"{refusing_venue} answered the websocket upgrade with HTTP 451: {RESTRICTED}"


async def test_a_refused_upgrade_without_json_gives_its_first_line(refusing_venue: str) -> None:
    error = await _error_of(f"ws://{refusing_venue}/page")

    described = describe_connect_error(error, f"ws://{refusing_venue}")

    assert described == f"{refusing_venue} answered the websocket upgrade with HTTP 403: <html>"


async def test_tls_to_a_plain_server_says_tls_failed(refusing_venue: str) -> None:
    error = await _error_of(f"wss://{refusing_venue}/stream")

    assert describe_connect_error(error, f"wss://{refusing_venue}").startswith(
        f"TLS with {refusing_venue} failed: "
    )


def test_without_a_url_the_error_speaks_for_itself() -> None:
    assert describe_connect_error(ConnectionRefusedError("scripted failure 1")) == (
        "ConnectionRefusedError: scripted failure 1"
    )
    assert describe_connect_error(RuntimeError()) == "RuntimeError"
    assert describe_connect_error(socket.gaierror(-2, "Name or service not known")) == (
        "cannot resolve the host (Name or service not known)"
    )


def test_a_long_peer_message_is_clipped() -> None:
    assert len(describe_connect_error(RuntimeError("x" * 10_000))) < 300


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://stream.binance.com:9443", ("stream.binance.com", "stream.binance.com:9443")),
        ("wss://fstream.binance.com", ("fstream.binance.com", "fstream.binance.com:443")),
        ("ws://127.0.0.1", ("127.0.0.1", "127.0.0.1:80")),
        ("nats://h", ("h", "h")),
    ],
)
def test_peer_is_the_host_and_the_port_in_use(url: str, expected: tuple[str, str]) -> None:
    assert peer(url) == expected


async def test_a_certificate_we_do_not_trust_is_named(tmp_path: Path) -> None:
    server = ensure_pki(tmp_path, clients=())["server"]  # signed by a private CA nobody trusts
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        error = await _error_of(f"wss://127.0.0.1:{port}/stream")
    finally:
        listener.close()

    assert isinstance(error, ssl.SSLCertVerificationError)
    assert describe_connect_error(error, f"wss://127.0.0.1:{port}") == (
        f"TLS with 127.0.0.1:{port} failed: unable to get local issuer certificate"
    )
