"""A private CA and the certificates of the secure stack (mutual TLS), made with ``cryptography``.

The layout is one directory per identity, each self-contained, so that a container mounts only its
own (``ca.pem`` is the CA's certificate, never its key)::

    <dir>/ca/ca.pem ca.key          the CA (the key stays here: nothing mounts this directory)
    <dir>/server/ca.pem cert.pem key.pem     nats-server (SAN: localhost, nats, 127.0.0.1, ::1)
    <dir>/<name>/ca.pem cert.pem key.pem     one client identity: subject ``CN=<name>``

nats-server maps a client certificate to a user by its subject (``verify_and_map``), so the user
names in ``deploy/nats/authorization.conf`` are ``CN=connector_feed`` and the like. Existing files
are kept while they are valid for more than ``RENEW_BEFORE``; run ``python -m services.common.pki DIR``
again to add identities or renew.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The identities of the stack: one per service, and the read-only one (CLI, ``nats`` CLI).
STACK_IDENTITIES = ("connector_feed", "strategy_engine", "context", "reader")
SERVER_NAMES = ("localhost", "nats")
SERVER_IPS = ("127.0.0.1", "::1")
VALID_FOR = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Identity:
    """Where one identity's files are (what ``NATS_TLS_CA/CERT/KEY`` point at)."""

    name: str
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    def env(self) -> dict[str, str]:
        """The settings a client with this identity needs (paths only, no secret values); its inbox
        prefix is the one its permissions grant (``_INBOX.<name>.>``)."""
        return {
            "NATS_TLS_CA": str(self.ca),
            "NATS_TLS_CERT": str(self.cert),
            "NATS_TLS_KEY": str(self.key),
            "NATS_INBOX_PREFIX": f"_INBOX.{self.name}",
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _still_valid(path: Path) -> bool:
    if not path.is_file():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _ca(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    cert_path, key_path = directory / "ca" / "ca.pem", directory / "ca" / "ca.key"
    if _still_valid(cert_path) and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hftfeed local CA")])
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key


def _issue(
    identity: Identity, ca: tuple[x509.Certificate, PrivateKey], server: bool, renew: bool
) -> Identity:
    ca_cert, ca_key = ca
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    same_ca = identity.ca.is_file() and identity.ca.read_bytes() == ca_pem
    if not renew and same_ca and _still_valid(identity.cert) and identity.key.is_file():
        return identity
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)])
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    _write_key(identity.key, key)
    _write_cert(identity.cert, builder.sign(ca_key, hashes.SHA256()))
    identity.ca.write_bytes(ca_pem)
    return identity


def ensure_pki(
    directory: Path, clients: Sequence[str] = STACK_IDENTITIES, renew: bool = False
) -> dict[str, Identity]:
    """Create (or keep, while valid) the CA, the server's and each client's certificate under
    ``directory``; returns the identities by name, ``server`` included."""
    ca = _ca(directory)
    identities = {"server": _issue(Identity("server", directory / "server"), ca, True, renew)}
    for name in clients:
        identities[name] = _issue(Identity(name, directory / name), ca, False, renew)
    return identities


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.common.pki DIR [--client NAME ...] [--chown UID:GID]`` (compose's init)."""
    parser = argparse.ArgumentParser(prog="python -m services.common.pki", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--client", action="append", help="client identity (default: the stack's)")
    parser.add_argument("--chown", help="UID:GID to own the client identities (they run as that user)")
    args = parser.parse_args(argv)
    identities = ensure_pki(args.directory, args.client or STACK_IDENTITIES)
    if args.chown:
        uid, gid = (int(part) for part in args.chown.split(":"))
        for name, identity in identities.items():
            if name == "server":
                continue
            for path in (identity.directory, identity.ca, identity.cert, identity.key):
                os.chown(path, uid, gid)
    print(f"certificates in {args.directory}: {', '.join(sorted(identities))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
