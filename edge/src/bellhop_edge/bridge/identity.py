"""Who this gateway is to the cloud: its enrolment key and the relay's address.

    identity = enrol(data_dir, relay_url="https://relay.example", token=..., name="lisbon-gw")
    identity = Identity.load(data_dir)          # None until enrolled

`bellhop edge enrol` generates an Ed25519 key on the gateway, proves to the
relay that it holds it (a signature over the one-time enrolment token, sent
in a POST body, never in a URL) and keeps, in `DATA_DIR/bridge/`:

    key.pem         the private key (0600); it never leaves the gateway
    identity.json   the gateway id the relay gave, its hotel and the relay's URL (0600)

The bridge then proves the same key on every connection (docs/bridge.md).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bellhop_edge.errors import AuthError, ConfigError, Unavailable
from bellhop_edge.files import write_atomic

__all__ = ["BRIDGE_PATH", "Identity", "enrol"]

# The relay's endpoint for bridges, under its base URL.
BRIDGE_PATH: Final = "/v1/bridge"
_ENROL_CONTEXT: Final = b"bellhop-enrol-v1\x00"
_TIMEOUT_S: Final = 30.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Identity:
    gateway_id: str
    hotel_id: str
    relay_url: str  # the relay's base URL, http(s)://host[:port]
    bridge_endpoint: str = ""  # the relay's answer at enrolment; "": derived from relay_url

    @staticmethod
    def directory(data_dir: Path) -> Path:
        return data_dir / "bridge"

    @classmethod
    def load(cls, data_dir: Path) -> Identity | None:
        path = cls.directory(data_dir) / "identity.json"
        try:
            doc = json.loads(path.read_text())
            identity = cls(
                str(doc["gateway_id"]),
                str(doc["hotel_id"]),
                str(doc["relay_url"]),
                str(doc.get("bridge_endpoint") or ""),
            )
            if identity.bridge_endpoint:
                check_bridge_url(identity.bridge_endpoint)
            return identity
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unreadable bridge identity: {exc}") from None

    def save(self, data_dir: Path) -> None:
        path = self.directory(data_dir) / "identity.json"
        write_atomic(path, json.dumps(asdict(self), indent=1) + "\n", mode=0o600)

    @staticmethod
    def key(data_dir: Path) -> Ed25519PrivateKey:
        path = Identity.directory(data_dir) / "key.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable bridge key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 key")
        return key

    @property
    def bridge_url(self) -> str:
        """Where the bridge connects: as the relay said, else ws(s)://host/v1/bridge."""
        if self.bridge_endpoint:
            return self.bridge_endpoint
        parts = urllib.parse.urlsplit(self.relay_url)
        scheme = {"https": "wss", "http": "ws"}[parts.scheme]
        return urllib.parse.urlunsplit((scheme, parts.netloc, BRIDGE_PATH, "", ""))


def check_bridge_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"ws", "wss"} or not parts.netloc or parts.path != BRIDGE_PATH:
        raise ConfigError(f"bridge URL {url!r}: expected ws(s)://host[:port]{BRIDGE_PATH}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("the bridge URL must hold no query, fragment or credentials")
    return url


def check_relay_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"relay URL {url!r}: give http(s)://host[:port]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("the relay URL must hold no query, fragment or credentials")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def enrol(data_dir: Path, *, relay_url: str, token: str, name: str) -> Identity:
    """Enrol with the relay and keep the key and identity; refuses if already enrolled."""
    relay_url = check_relay_url(relay_url)
    if Identity.load(data_dir) is not None:
        raise ConfigError(f"already enrolled ({Identity.directory(data_dir)}); remove it first")
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    body = {
        "token": token,
        "public_key": _b64url(public),
        "signature": _b64url(key.sign(_ENROL_CONTEXT + token.encode())),
        "name": name,
    }
    answer = _post(relay_url + "/v1/gateways/enrol", body)
    bridge_url = check_bridge_url(str(answer.get("bridge_url") or _derived(relay_url)))
    identity = Identity(str(answer["id"]), str(answer["hotel_id"]), relay_url, bridge_url)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(Identity.directory(data_dir) / "key.pem", pem, mode=0o600)
    identity.save(data_dir)
    return identity


def _derived(relay_url: str) -> str:
    return Identity("", "", relay_url).bridge_url


def _post(url: str, body: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = _problem(exc)
        if exc.code in {401, 403, 404, 409, 422}:
            raise AuthError(f"the relay refused the enrolment ({exc.code}): {detail}") from None
        raise Unavailable(f"the relay answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach the relay at {url}: {exc}") from None


def _problem(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read())
        return str(doc.get("detail") or doc.get("title") or doc)[:300]
    except (OSError, ValueError):
        return exc.reason if isinstance(exc.reason, str) else "no detail"
