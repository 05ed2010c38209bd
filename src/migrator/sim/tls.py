"""The simulator's own small certificate authority, for serving clouds over HTTPS.

``ensure_tls_files(data_dir, names)`` keeps, under ``DATA_DIR/tls/``, a CA (key and
self-signed certificate, ``ca.pem``: what clouds.yaml's ``cacert`` names) and a server
certificate signed by it for ``localhost``, ``127.0.0.1``, ``::1`` and any other name the
clouds are reached by. The CA outlives restarts (clients that trust it keep trusting it); the
server certificate is issued again when it is missing, close to expiry, signed by another CA
or does not cover a name now needed. Keys are written with mode 0600.

``issue_certificate`` also makes client certificates (tests of clouds.yaml's ``cert``/``key``),
and ``server_context(files, client_ca=...)`` can require them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 397  # the longest validity clients accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=7)
# Addresses that mean "every interface": no certificate names them.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the simulator's CA and of its server certificate."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def tls_files(data_dir: Path) -> TlsFiles:
    folder = data_dir / "tls"
    return TlsFiles(ca_cert=folder / "ca.pem", ca_key=folder / "ca-key.pem",
                    cert=folder / "server.pem", key=folder / "server-key.pem")


def ensure_tls_files(data_dir: Path, names: Iterable[str] = ()) -> TlsFiles:
    """The CA (made once) and a server certificate covering ``names`` and the defaults."""
    files = tls_files(data_dir)
    files.ca_cert.parent.mkdir(parents=True, exist_ok=True)
    wanted = sorted({*DEFAULT_NAMES, *(n for n in names if n not in WILDCARD_HOSTS)})
    now = dt.datetime.now(dt.UTC)
    ca = _load(files.ca_cert, files.ca_key)
    if ca is None or ca[0].not_valid_after_utc - now < RENEW_BEFORE:
        key = ec.generate_private_key(ec.SECP256R1())
        ca = (_ca_certificate(key, now), key)
        _write(files.ca_cert, files.ca_key, *ca)
        leaf = None
    else:
        leaf = _load(files.cert, files.key)
    ca_cert, ca_key = ca
    if leaf is None or not _fits(*leaf, ca_cert, wanted, now):
        cert_pem, key_pem = issue_certificate(ca_cert, ca_key, wanted)
        _write_pem(files.cert, cert_pem, files.key, key_pem)
    return files


def server_context(files: TlsFiles, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """The listening side's context; with ``client_ca``, a client certificate signed by it
    is required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


def load_ca(files: TlsFiles) -> tuple[x509.Certificate, Key]:
    found = _load(files.ca_cert, files.ca_key)
    if found is None:
        raise FileNotFoundError(f"no CA in {files.ca_cert.parent}")
    return found


def issue_certificate(ca_cert: x509.Certificate, ca_key: Key, names: Iterable[str], *,
                      client: bool = False, days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """A certificate for ``names`` (DNS names or IP addresses) signed by the CA, and its
    key, both PEM. ``client``: for client authentication instead of a server."""
    names = list(names)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _ca_certificate(key: Key, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "migrator simulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "migrator simulator CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _fits(cert: x509.Certificate, key: Key, ca: x509.Certificate, wanted: list[str],
          now: dt.datetime) -> bool:
    if cert.issuer != ca.subject or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    if cert.public_key() != key.public_key():  # a write cut between the key and the cert
        return False
    try:
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    have = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    return all(str(_general_name(n).value) in have for n in wanted)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Key] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return cert, key


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(cert_path: Path, key_path: Path, cert: x509.Certificate, key: Key) -> None:
    _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM), key_path,
               _key_pem(key))


def _write_pem(cert_path: Path, cert_pem: bytes, key_path: Path, key_pem: bytes) -> None:
    """Key first (0600 from its creation), then the certificate; each replaced atomically."""
    for path, data, mode in ((key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        tmp.replace(path)
