"""The relay's token keys, cached on the gateway so that its LAN API verifies the
relay's access tokens with the internet down (docs/edge-gateway.md, "Cloud tokens").

    cache = TrustCache(Identity.directory(data_dir))   # DATA_DIR/bridge/jwks.json
    cache.keep(welcome.token_trust)   # checked, then written whole (temp, fsync, rename)
    doc = read(path)                  # {"keys": [...], "issuer", "audience", "org_id"}

The relay sends them in every bridge's Welcome. What it sends is checked here,
at the boundary, before anything is written: at most 64 KiB, 1-16 keys, each an
Ed25519 (EdDSA) or P-256 (ES256) public key with a plain `kid`; a document that
breaks a rule is refused whole and the cached one kept, so a bad Welcome never
locks staff out. The file is a JWKS with three more members, which RFC 7517
lets readers ignore.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Final

import jwt
from bellhop.bridge.v1 import bridge_pb2

__all__ = [
    "FILE_NAME",
    "MAX_JWKS_BYTES",
    "MAX_KEYS",
    "TrustCache",
    "TrustError",
    "read",
    "validate",
]

log = logging.getLogger(__name__)

FILE_NAME: Final = "jwks.json"
MAX_JWKS_BYTES: Final = 64 * 1024
MAX_KEYS: Final = 16
MAX_TEXT: Final = 200
# A key id: an RFC 7638 thumbprint is 43 base64url characters; nothing exotic.
KID: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# (kty, crv) -> the one algorithm such a key signs with here.
ALGORITHMS: Final = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}
_PUBLIC: Final = ("kty", "crv", "x", "y")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TrustError(ValueError):
    """What the relay sent is not a token trust this gateway accepts."""


def validate(trust: bridge_pb2.TokenTrust) -> dict[str, Any]:
    """The cache document for `trust`, or TrustError saying what is wrong."""
    if len(trust.jwks.encode()) > MAX_JWKS_BYTES:
        raise TrustError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(trust.jwks)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise TrustError("the JWKS is not JSON this gateway reads") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise TrustError(f"the JWKS must hold 1-{MAX_KEYS} keys")
    checked = [_key(key) for key in keys]
    if len({key["kid"] for key in checked}) != len(checked):
        raise TrustError("two keys share a kid")
    return {
        "keys": checked,
        "issuer": _text(trust.issuer, "issuer"),
        "audience": _text(trust.audience, "audience"),
        "org_id": _text(trust.org_id, "org_id", required=False),
    }


def _key(key: object) -> dict[str, Any]:
    if not isinstance(key, dict):
        raise TrustError("a JWKS key is not an object")
    kid = key.get("kid")
    if not isinstance(kid, str) or not KID.fullmatch(kid):
        raise TrustError("a key without a valid kid (1-128 of A-Z a-z 0-9 _ . -)")
    alg = ALGORITHMS.get((str(key.get("kty")), str(key.get("crv"))))
    if alg is None:
        raise TrustError(f"key {kid}: only Ed25519 (EdDSA) and P-256 (ES256) keys are accepted")
    if key.get("alg", alg) != alg or key.get("use", "sig") != "sig":
        raise TrustError(f"key {kid}: not a {alg} signing key")
    if "d" in key:
        raise TrustError(f"key {kid}: holds a private part")
    public = {member: key[member] for member in _PUBLIC if member in key}
    if not all(isinstance(value, str) for value in public.values()):
        raise TrustError(f"key {kid}: malformed")
    clean = {**public, "kid": kid, "alg": alg, "use": "sig"}
    try:
        jwt.PyJWK.from_dict(clean)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise TrustError(f"key {kid}: {exc}") from None
    return clean


def _text(value: str, field: str, *, required: bool = True) -> str:
    if (required and not value) or len(value) > MAX_TEXT or _CONTROL.search(value):
        raise TrustError(f"{field}: 1-{MAX_TEXT} characters without control characters")
    return value


def read(path: Path) -> dict[str, Any] | None:
    """The cached document, None when there is none; OSError/ValueError when unreadable."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a JSON object")
    return doc


def _write(path: Path, data: bytes) -> None:
    """Replace `path` whole and durably: a reader sees the old file or the new one, and
    after a power cut the file is one of them too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class TrustCache:
    """`DATA_DIR/bridge/jwks.json`, kept by the bridge client, read by the LAN API."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME

    def keep(self, trust: bridge_pb2.TokenTrust | None) -> bool:
        """Check and cache what a Welcome carried; True when the file changed.

        Never raises: the bridge carries on whatever the relay sent, and the LAN
        API keeps the keys it had. Blocking (fsync): run it in a thread.
        """
        if trust is None:  # an older relay: keep what there is
            return False
        try:
            data = json.dumps(validate(trust), sort_keys=True, indent=1).encode() + b"\n"
        except TrustError as exc:
            log.error("the relay's token keys were refused; keeping the cached ones: %s", exc)
            return False
        except Exception:  # a case the checks missed must not keep the bridge down
            log.exception("the relay's token keys could not be read; keeping the cached ones")
            return False
        try:
            with contextlib.suppress(FileNotFoundError):
                if self.path.read_bytes() == data:
                    return False  # unchanged: the LAN API has nothing to reload
            _write(self.path, data)
        except OSError as exc:
            log.error("cannot cache the relay's token keys in %s: %s", self.path, exc)
            return False
        kids = ", ".join(key["kid"] for key in json.loads(data)["keys"])
        log.info("cached the relay's token keys (kid %s) in %s", kids, self.path)
        return True
