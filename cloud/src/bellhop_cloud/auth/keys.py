"""The relay's Ed25519 signing key: generated on first run, kept in a 0600 file.

The private key is never logged or returned; only the public half leaves the
process, as a JWKS document that edges cache to verify staff tokens offline.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bellhop_cloud.errors import ConfigError

log = logging.getLogger(__name__)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict: characters outside the base64url alphabet are an error, not skipped."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key pair and its key id (the RFC 7638 JWK thumbprint)."""

    private_key: Ed25519PrivateKey
    kid: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        x = b64url(raw_public_bytes(private_key.public_key()))
        # RFC 7638: the required members, sorted, no whitespace.
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
        )
        return cls(private_key, b64url(hashlib.sha256(canonical.encode()).digest()))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(raw_public_bytes(self.public_key)),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Read the PEM key at `path`, creating it (mode 0600) when it does not exist.

    A new key is written whole to a file of its own, then linked into place, which
    fails if another process got there first: two relay nodes starting together end
    up with one key, neither ever reads a half-written file, and a relay killed while
    creating it leaves no empty key behind.
    """
    if path.exists():
        return _read_key(path)
    key = SigningKey.generate()
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, path)
    except FileExistsError:
        return _read_key(path)  # another process created it meanwhile: that one is the key
    except OSError as exc:
        raise ConfigError(f"cannot create signing key file {path}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()
    log.info("generated signing key kid=%s at %s", key.kid, path)
    return key


def _read_key(path: Path) -> SigningKey:
    try:
        pem = path.read_bytes()
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"signing key file {path} is unreadable or not a PEM key") from exc
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ConfigError(f"signing key file {path} is not an Ed25519 key")
    if path.stat().st_mode & 0o077:
        log.warning("signing key file %s is readable by other users; chmod 600 it", path)
    return SigningKey.from_private_key(private_key)
