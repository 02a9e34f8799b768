"""What the relay tells each gateway in its Welcome so that the gateway's LAN API
accepts the relay's access tokens offline (docs/edge-gateway.md, "Cloud tokens").

The keys only change when the relay starts with another signing key, and every
bridge is opened again then, so each Welcome carries what is current.
"""

from __future__ import annotations

from bellhop.bridge.v1 import bridge_pb2

from bellhop_cloud.auth.tokens import EDGE_AUDIENCE
from bellhop_cloud.bridge.identities import Identity
from bellhop_cloud.relay import Relay

__all__ = ["of"]


def of(relay: Relay, identity: Identity) -> bridge_pb2.TokenTrust:
    """The relay's JWKS, issuer and the gateways' audience, and the gateway's organisation."""
    tokens = relay.tokens
    return bridge_pb2.TokenTrust(
        jwks=tokens.jwks_json, issuer=tokens.issuer, audience=EDGE_AUDIENCE, org_id=identity.org_id
    )
