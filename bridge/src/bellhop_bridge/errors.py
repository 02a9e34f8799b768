"""Errors of the bridge protocol.

    BridgeError
     └── ProtocolError      the peer broke the protocol, or must be refused; carries a
                            `CloseCode` and whether the peer may try again (`fatal`)

What reaches the peer is the code and a short message in an `Error` frame,
never a Python exception's text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FATAL", "BridgeError", "CloseCode", "ProtocolError"]


class CloseCode(StrEnum):
    """Why a bridge ends; sent in the `Error` frame and counted by both ends."""

    BAD_FRAME = "bad_frame"  # not a Frame, or a frame that breaks its own rules
    TOO_LARGE = "too_large"  # a frame past MAX_FRAME_BYTES
    UNEXPECTED = "unexpected_frame"  # a frame this state does not accept
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_GATEWAY = "unknown_gateway"  # never enrolled
    REVOKED = "revoked"  # enrolled once, revoked since
    BAD_PROOF = "bad_proof"  # the signature does not match the enrolment key
    WRONG_HOTEL = "wrong_hotel"  # the gateway claims a hotel it is not enrolled for
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    PEER_TIMEOUT = "peer_timeout"  # no frame for longer than the heartbeat timeout
    CONNECTION_LOST = "connection_lost"  # the socket closed without an Error frame
    WINDOW_EXCEEDED = "window_exceeded"  # more unacknowledged events than allowed
    OUT_OF_ORDER = "out_of_order"  # a lane's sequence went backwards within a connection
    REPLACED = "replaced"  # the same gateway connected again
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


# The peer must not reconnect: retrying cannot succeed until a person acts.
FATAL = frozenset(
    {
        CloseCode.UNSUPPORTED_VERSION,
        CloseCode.UNKNOWN_GATEWAY,
        CloseCode.REVOKED,
        CloseCode.BAD_PROOF,
        CloseCode.WRONG_HOTEL,
    }
)


class BridgeError(Exception):
    """Root of the bridge protocol's errors."""


class ProtocolError(BridgeError):
    def __init__(self, code: CloseCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        return self.code in FATAL
