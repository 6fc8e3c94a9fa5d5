"""Connection errors as one readable line that names the peer: health's cause and the logs' ``cause``.

``repr(socket.gaierror(...))`` says ``gaierror(-2, 'Name or service not known')`` and nothing
about which host failed to resolve; a refused websocket upgrade says "expected 101, received 451"
without the venue's own explanation. ``describe_connect_error`` puts the host (and port) first,
then what happened, then the peer's own message when it sent one::

    cannot resolve stream.binance.com (Name or service not known)
    stream.binance.com:9443 refused the connection
    stream.binance.com:9443 answered the websocket upgrade with HTTP 451: Service unavailable ...
    TLS with stream.binance.com:9443 failed: unable to get local issuer certificate
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import orjson

from schemas import rules

#: Longest peer message quoted (a venue may answer an upgrade with a whole HTML page).
MAX_PEER_MESSAGE = 200
_DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


def peer(url: str) -> tuple[str, str]:
    """``(host, host:port)`` of a URL; the port is the scheme's default when the URL has none."""
    parts = urlsplit(url)
    host = parts.hostname or url
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    return host, host if port is None else f"{host}:{port}"


def describe_connect_error(error: BaseException, url: str | None = None) -> str:
    """Why connecting to ``url`` failed, in one line that names the host (``url`` unknown: the
    error alone, with its type)."""
    if isinstance(error, socket.gaierror):
        reason = error.strerror or str(error)
        return f"cannot resolve {peer(url)[0]} ({reason})" if url else f"cannot resolve the host ({reason})"
    if not url:
        return _error_alone(error)
    address = peer(url)[1]
    at = f"{address} "
    if isinstance(error, ConnectionRefusedError):
        return f"{at}refused the connection"
    if isinstance(error, TimeoutError):
        return f"{at}did not answer in time"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS with {address} failed: {error.verify_message or error.reason}"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {address} failed: {error.reason or error}"
    status = _upgrade_status(error)
    if status is not None:
        answer = f"{at}answered the websocket upgrade with HTTP {status}"
        message = _peer_message(error)
        return f"{answer}: {message}" if message else answer
    if isinstance(error, OSError) and error.strerror:
        return f"{at}{error.strerror}"
    return at + _error_alone(error)


def _error_alone(error: BaseException) -> str:
    """An error whose peer is unknown (a seed-style connector's): its type and message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    detail = rules.clip(str(error), MAX_PEER_MESSAGE)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _upgrade_status(error: BaseException) -> int | None:
    """The HTTP status of a refused websocket upgrade (picows' ``WSInvalidStatusError.response``,
    websockets' ``InvalidStatus.response``), if the error carries one."""
    response = getattr(error, "response", None)
    status = getattr(response, "status", None) or getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _peer_message(error: BaseException) -> str:
    """The peer's own explanation in a refused upgrade (picows: ``raw_body``; websockets:
    ``response.body``): Binance's ``{"code":..., "msg": ...}`` gives ``msg``; any other body, its
    first line."""
    body = getattr(error, "raw_body", None) or getattr(getattr(error, "response", None), "body", None)
    if not isinstance(body, bytes | bytearray) or not body.strip():
        return ""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("msg"), str):
        return rules.clip(decoded["msg"], MAX_PEER_MESSAGE)
    text = bytes(body).decode(errors="replace").strip().splitlines()[0]
    return rules.clip(text, MAX_PEER_MESSAGE)
