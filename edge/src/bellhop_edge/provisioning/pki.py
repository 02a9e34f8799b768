"""The hotel's TLS: a CA of its own and the broker's server certificate.

Devices verify the broker against the hotel CA, whose certificate travels in
every provisioning bundle. Keys are ECDSA P-256: the ESP32's TLS stack
handles it, and a handshake costs a device far less than RSA-2048.

    files = HotelPki(pki_dir)
    files.create_ca(hotel_id)                       # or files.adopt_ca(cert, key)
    files.issue_server(["gateway.hotel.lan", "192.168.10.2"], ca_key=...)
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bellhop_edge.errors import PkiError
from bellhop_edge.files import write_atomic

__all__ = [
    "DEFAULT_CA_DAYS",
    "DEFAULT_SERVER_DAYS",
    "LOOPBACK_HOSTS",
    "HotelPki",
    "ServerCertificate",
]

# Hotels run offline for years; an expired broker certificate takes every
# device off the air at once, so the defaults are long and `ca` re-issues.
DEFAULT_CA_DAYS = 7300
DEFAULT_SERVER_DAYS = 3650
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
_BACKDATE = datetime.timedelta(hours=1)  # tolerate a device clock slightly behind


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """Where the broker's TLS files are, and what the certificate names."""

    ca_cert: Path
    cert: Path
    key: Path
    hosts: tuple[str, ...]
    not_after: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, _SigningKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot read the CA ({cert_path}, {key_path}): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{key_path}: only EC and RSA CA keys are supported")
    if cert.public_key() != key.public_key():
        raise PkiError(f"{key_path} is not the key of {cert_path}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(f"{cert_path} is not a CA certificate (basicConstraints CA:TRUE)")
    return cert, key


class HotelPki:
    """The PKI files of one gateway, in one directory.

    `ca.crt` (public, goes into bundles), `ca.key` (0600, only when the
    gateway created the CA), `server.crt`, `server.key` (0640: the broker
    reads it, through the directory's group; see deploy/mosquitto/README.md).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.server_cert = directory / "server.crt"
        self.server_key = directory / "server.key"

    @property
    def has_server(self) -> bool:
        return self.ca_cert.exists() and self.server_cert.exists() and self.server_key.exists()

    def ca_pem(self) -> str:
        try:
            return self.ca_cert.read_text()
        except OSError as exc:
            raise PkiError(
                f"no hotel CA at {self.ca_cert} ({exc.strerror}): run `bellhop devices ca` first"
            ) from None

    def create_ca(self, hotel_id: str, *, days: int = DEFAULT_CA_DAYS) -> Path:
        """A new self-signed CA for the hotel; refuses to replace an existing one."""
        if self.ca_cert.exists():
            raise PkiError(f"{self.ca_cert} exists: the hotel already has a CA")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bellhop"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Bellhop hotel CA {hotel_id}"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        # The key first: a certificate without its key would block a retry.
        write_atomic(self.ca_key, _key_pem(key), mode=0o600)
        write_atomic(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return self.ca_cert

    def adopt_ca(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        """Use the operator's CA: its certificate is copied, its key stays where it is.

        Refuses to replace a different CA: every provisioned device trusts it.
        """
        cert, _ = _load_ca(cert_path, key_path)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if self.ca_cert.exists() and self.ca_cert.read_bytes() != pem:
            raise PkiError(
                f"{self.ca_cert} holds another CA, which provisioned devices trust;"
                " move the directory away to start over (and re-provision every device)"
            )
        write_atomic(self.ca_cert, pem, mode=0o644)
        return self.ca_cert, key_path

    def issue_server(
        self,
        hosts: Sequence[str],
        *,
        ca_key: Path | None = None,
        days: int = DEFAULT_SERVER_DAYS,
    ) -> ServerCertificate:
        """A broker certificate for `hosts` (plus loopback), signed by the hotel CA.

        Replaces any previous one; connected devices keep their sessions
        until they reconnect, and verify the new one against the same CA.
        """
        if days < 1:
            raise PkiError("a certificate must be valid for at least one day")
        ca_cert, signer = _load_ca(self.ca_cert, ca_key or self.ca_key)
        names = list(dict.fromkeys([*(h.strip() for h in hosts if h.strip()), *LOOPBACK_HOSTS]))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(
            now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc
        )  # a leaf outliving its CA would fail verification anyway
        try:
            ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(authority, critical=False)
            .sign(signer, hashes.SHA256())
        )
        write_atomic(self.server_key, _key_pem(key), mode=0o640)
        write_atomic(self.server_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return ServerCertificate(
            self.ca_cert, self.server_cert, self.server_key, tuple(names), not_after
        )

    def server_hosts(self) -> tuple[str, ...]:
        """The names in the current server certificate, first the primary one."""
        try:
            cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return ()
        return tuple(str(name.value) for name in san)
