"""Who we are to NATS and how the link is protected: credentials, TLS, and keeping secrets out of text.

``NatsSecurity`` holds what the ``NATS_*`` settings say (user/password, token, nkey seed or creds
file, TLS CA/cert/key) and turns it into nats-py ``connect()`` options. TLS is on when a CA or a
client certificate is configured or any server URL is ``tls://``; it then starts with the TLS
handshake (``tls_handshake_first``), so nothing, credentials included, is ever sent in clear text,
and a server or a man in the middle that does not speak TLS fails the connect. (nats-py on its own
upgrades only when the server's plaintext INFO asks for it, so a ``tls://`` URL alone forces
nothing.) nats-server must then have ``handshake_first`` on (``auto`` serves both kinds of client);
``NATS_TLS_HANDSHAKE_FIRST=false`` falls back to nats-py's upgrade-when-asked behaviour.

Credentials are never logged: ``redact_url`` hides the user-info part of NATS URLs and ``scrub``
replaces every configured secret (and any URL user-info) in text such as error messages.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

REDACTED = "***"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]+@")
_PERMISSION = re.compile(r'permissions violation for (?P<op>\w+) to "(?P<subject>[^"]*)"')
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def servers(url: str) -> list[str]:
    """The servers of a comma-separated NATS URL list."""
    return [u.strip() for u in url.split(",") if u.strip()]


def redact_url(url: str) -> str:
    """``nats://user:pass@host:4222`` -> ``nats://***@host:4222`` (each server of a list)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", url)


def url_secrets(url: str) -> list[str]:
    """The secret user-info parts of a NATS URL list: passwords, and tokens (a user with no password)."""
    found: list[str] = []
    for server in servers(url):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.password:
            found.append(parts.password)
        elif parts.username:  # a user alone in the URL is a token
            found.append(parts.username)
    return found


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret and every URL user-info replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def permission_violation(error: BaseException) -> tuple[str, str] | None:
    """``(operation, subject)`` if ``error`` is a permissions violation the server reported."""
    match = _PERMISSION.search(str(error))
    return (match.group("op"), match.group("subject")) if match else None


def is_auth_failure(error: BaseException) -> bool:
    """The server refused our credentials (wrong, missing or unknown identity)."""
    return "authorization violation" in str(error).lower() or "authorization failed" in str(error).lower()


def is_tls_failure(error: BaseException) -> bool:
    """A TLS handshake that will not succeed on retry: certificate, CA, protocol or plaintext peer."""
    return isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLEOFError)


class _TlsEofNoise(logging.Filter):
    """Python 3.11's asyncio warns "returning true from eof_received() has no effect when using ssl"
    on every TLS connection nats-py closes: noise, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


_TLS_EOF_FILTER = _TlsEofNoise()


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """Verify the server against ``ca`` (else the system's roots); present ``cert``/``key`` if given."""
    logging.getLogger("asyncio").addFilter(_TLS_EOF_FILTER)  # idempotent
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True)
class NatsSecurity:
    """Credentials and TLS for one NATS connection. Secrets stay ``SecretStr`` or file paths."""

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None
    nkey_seed_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    tls_handshake_first: bool = True
    #: Reply subjects of this client's requests; a server can grant exactly ``<prefix>.>``.
    inbox_prefix: str = "_INBOX"

    def __repr__(self) -> str:
        return f"NatsSecurity(auth={self.auth_kind()!r}, tls={self.tls_files_set()})"

    def tls_files_set(self) -> bool:
        return any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))

    def tls_enabled(self, url: str) -> bool:
        return self.tls_files_set() or any(s.startswith("tls://") for s in servers(url))

    def auth_kind(self, url: str = "") -> str:
        """How we identify (for logs): creds, nkey, token, user, url, cert, or none."""
        if self.creds_file is not None:
            return "creds"
        if self.nkey_seed_file is not None:
            return "nkey"
        if self.token is not None:
            return "token"
        if self.user is not None:
            return "user"
        if url_secrets(url):
            return "url"
        return "cert" if self.tls_cert is not None else "none"

    def secrets(self, url: str = "") -> list[str]:
        """Every secret value to keep out of logs and error messages."""
        values = [s.get_secret_value() for s in (self.password, self.token) if s is not None]
        values += [str(p) for p in (self.creds_file, self.nkey_seed_file) if p is not None]
        return values + url_secrets(url)

    def connect_options(self, url: str) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``connect()``."""
        options: dict[str, Any] = {"inbox_prefix": self.inbox_prefix}
        if self.user is not None:
            options["user"] = self.user
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if self.token is not None:
            options["token"] = self.token.get_secret_value()
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        if self.tls_enabled(url):
            options["tls"] = tls_context(self.tls_ca, self.tls_cert, self.tls_key)
            options["tls_handshake_first"] = self.tls_handshake_first
            if self.tls_hostname:
                options["tls_hostname"] = self.tls_hostname
        return options

    def plaintext_credentials(self, url: str) -> bool:
        """Credentials would cross a non-loopback network without TLS."""
        if self.tls_enabled(url) or self.auth_kind(url) in ("none", "cert"):
            return False
        return any((urlsplit(s).hostname or "") not in _LOOPBACK for s in servers(url))


def describe_connect_failure(error: BaseException | None, secrets: list[str]) -> str:
    """Why a connect failed, in words, without a secret in it."""
    if error is None:
        return "no answer (is nats-server running there?)"
    if is_auth_failure(error):
        return (
            "authorization violation: the server refused our identity (check NATS_USER/NATS_PASSWORD, "
            "NATS_TOKEN, NATS_NKEY_SEED, NATS_CREDS or the TLS client certificate)"
        )
    if is_tls_failure(error):
        return (
            f"TLS handshake failed ({scrub(str(error), secrets)}): check NATS_TLS_CA/CERT/KEY; a server "
            "without handshake_first needs NATS_TLS_HANDSHAKE_FIRST=false"
        )
    return scrub(repr(error), secrets)
