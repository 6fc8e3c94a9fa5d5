"""A real nats-server running the secure configuration of ``deploy/nats/``, and clients with its
identities; a password/nkey/token server with the same permissions for the credential tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from services.common.bus import Bus
from services.common.natsauth import NatsSecurity
from services.common.natsserver import DEPLOY_NATS, NatsServer, secure_server
from services.common.pki import STACK_IDENTITIES, Identity, ensure_pki

SERVICES = ("connector_feed", "strategy_engine", "context")
CONSUMERS = ("strategy_engine", "context")
#: Permission-set variable of each identity in deploy/nats/permissions.conf.
PERMISSIONS = {
    "connector_feed": "FEED_PERMISSIONS",
    "strategy_engine": "STRATEGY_PERMISSIONS",
    "context": "CONTEXT_PERMISSIONS",
    "reader": "READER_PERMISSIONS",
}


def identity_security(identity: Identity, **overrides: object) -> NatsSecurity:
    """The settings ``hftfeed up --secure`` gives a client with this identity."""
    fields: dict[str, object] = {
        "tls_ca": identity.ca,
        "tls_cert": identity.cert,
        "tls_key": identity.key,
        "inbox_prefix": f"_INBOX.{identity.name}",
    }
    return NatsSecurity(**{**fields, **overrides})  # type: ignore[arg-type]


@dataclass
class SecureNats:
    server: NatsServer
    identities: dict[str, Identity]
    pki_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def security(self, name: str, **overrides: object) -> NatsSecurity:
        return identity_security(self.identities[name], **overrides)

    def issue(self, name: str) -> Identity:
        """A further certificate from the same CA (e.g. a subject the server does not know)."""
        return ensure_pki(self.pki_dir, [name])[name]

    async def bus(self, name: str, **overrides: object) -> Bus:
        return await Bus.connect(self.url, f"test-{name}", 3.0, self.security(name, **overrides))


@contextmanager
def running_secure_nats(
    pki_dir: Path, config: Path | None = None, clients: tuple[str, ...] = ()
) -> Iterator[SecureNats]:
    server, identities = secure_server(
        pki_dir, config=config or DEPLOY_NATS / "nats-server.conf", clients=(*STACK_IDENTITIES, *clients)
    )
    with server:
        yield SecureNats(server, identities, pki_dir)


def password_config(directory: Path, passwords: Mapping[str, str], nkeys: Mapping[str, str]) -> Path:
    """A server configuration with the stack's permissions (deploy/nats/permissions.conf) and users
    identified by password (``passwords``: user -> password) or nkey (``nkeys``: user -> public key)."""
    shutil.copy(DEPLOY_NATS / "permissions.conf", directory / "permissions.conf")
    users = [
        f'{{ user: "{name}", password: "{password}", permissions: ${PERMISSIONS[name]} }}'
        for name, password in passwords.items()
    ]
    users += [f'{{ nkey: "{key}", permissions: ${PERMISSIONS[name]} }}' for name, key in nkeys.items()]
    config = directory / "nats-passwords.conf"
    config.write_text(
        'include "permissions.conf"\nauthorization {\n  users = [\n    ' + "\n    ".join(users) + "\n  ]\n}\n"
    )
    return config


def token_config(directory: Path, token: str) -> Path:
    config = directory / "nats-token.conf"
    config.write_text(f'authorization {{ token: "{token}" }}\n')
    return config


def password_security(user: str, password: str) -> NatsSecurity:
    return NatsSecurity(user=user, password=SecretStr(password), inbox_prefix=f"_INBOX.{user}")
