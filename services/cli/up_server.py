"""``hftfeed up``'s NATS server: the one already listening at NATS_URL, ours (plain, JetStream on)
when nothing listens on a local NATS_URL, or ``--secure``'s own (mutual TLS, one identity per
service, certificates kept under ``--pki-dir``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from services.common.natsauth import NatsSecurity, redact_url
from services.common.natsserver import NatsServer, host_port, is_listening, secure_server
from services.common.pki import Identity
from services.common.settings import CommonSettings

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: Identity settings a child must not inherit in secure mode (it gets its own).
_IDENTITY_VARIABLES = (
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CREDS",
    "NATS_NKEY_SEED",
    "NATS_TLS_",
    "NATS_INBOX_PREFIX",
)


def reader_security(reader: Identity) -> NatsSecurity:
    return NatsSecurity(
        tls_ca=reader.ca, tls_cert=reader.cert, tls_key=reader.key, inbox_prefix=f"_INBOX.{reader.name}"
    )


def start_secure_server(
    settings: CommonSettings, pki_dir: Path, console: Console
) -> tuple[NatsServer, dict[str, Identity]] | None:
    """Our own nats-server with the secure configuration on NATS_URL's (loopback) port."""
    host, port = host_port(settings.nats_url)
    if host not in _LOOPBACK or is_listening(host, port):
        console.print(
            f"[red]--secure starts its own nats-server on NATS_URL's port, but {host}:{port} is "
            + ("not local" if host not in _LOOPBACK else "taken")
            + ": set NATS_URL=nats://127.0.0.1:<a free port>[/]"
        )
        return None
    server, identities = secure_server(pki_dir, port, "127.0.0.1" if host == "localhost" else host)
    server.start()
    env_file = pki_dir / "reader.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in {"NATS_URL": server.url, **identities["reader"].env()}.items())
    )
    console.print(
        f"started nats-server (mutual TLS, one identity per service: deploy/nats/) at {server.url}, "
        f"pid {server.process.pid if server.process else '?'}; certificates in {pki_dir}\n"
        f"  read-only identity for the CLI:  set -a; . {env_file}; set +a"
    )
    return server, identities


def secure_child_env(env: dict[str, str], url: str, identity: Identity) -> dict[str, str]:
    own = {k: v for k, v in env.items() if not k.startswith(_IDENTITY_VARIABLES)}
    return {**own, "NATS_URL": url, **identity.env()}


def start_server(
    settings: CommonSettings, pki_dir: Path | None, console: Console
) -> tuple[NatsServer | None, dict[str, Identity], str, NatsSecurity | None] | None:
    """The NATS server to use (ours when none listens locally, or ``--secure``'s), the identities,
    the URL and the security ``up`` itself connects with; None (said why) when there is none."""
    host, port = host_port(settings.nats_url)
    if pki_dir is not None:
        started = start_secure_server(settings, pki_dir, console)
        if started is None:
            return None
        server, identities = started
        return server, identities, server.url, reader_security(identities["reader"])
    if is_listening(host, port):
        console.print(f"using the NATS server already at {redact_url(settings.nats_url)}")
        return None, {}, settings.nats_url, settings.nats_security()
    if host in _LOOPBACK:
        server = NatsServer(port=port, host="127.0.0.1" if host == "localhost" else host).start()
        pid = server.process.pid if server.process else "?"
        console.print(f"started nats-server (JetStream on) at {server.url}, pid {pid}")
        return server, {}, settings.nats_url, settings.nats_security()
    console.print(
        f"[red]nothing listens at {redact_url(settings.nats_url)}, and it is not local: start NATS there[/]"
    )
    return None
