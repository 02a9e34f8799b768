"""Exceptions of the cloud relay.

Every error a client can see is a `RelayError` with a stable `code` (the
`code` member of the problem-details body) and an HTTP status. Codes are
part of the API: add new ones, never rename.

    RelayError                          500 internal_error
    ├── ConfigError                     (startup only) configuration is unusable
    ├── StoreUnavailable                503 unavailable
    ├── AuthError                       401
    │   ├── Unauthenticated                 unauthenticated      no bearer token
    │   ├── InvalidToken                    invalid_token        bad signature/alg/aud/iss/type
    │   ├── TokenExpired                    token_expired
    │   ├── InvalidCredentials              invalid_credentials  wrong email or password
    │   ├── RefreshTokenInvalid             refresh_token_invalid
    │   ├── RefreshTokenReused              refresh_token_reused (the family is revoked)
    │   └── EnrolmentTokenInvalid           enrolment_token_invalid
    ├── Forbidden                       403 forbidden
    │   └── RoleNotAllowed                  role_not_allowed     grant above the grantor's ceiling
    ├── NotFound                        404 not_found
    │   └── UserNotFound                    user_not_found
    ├── Conflict                        409 conflict
    │   ├── EmailTaken                      email_taken
    │   └── LastOwner                       last_owner
    ├── BodyTooLarge                    413 too_large            over max_body_bytes
    ├── InvalidRequest                  422 invalid_request      carries field errors
    │   └── BadSignature                    bad_signature        enrolment proof does not verify
    └── RateLimited                     429 rate_limited         carries retry_after seconds
"""

from __future__ import annotations

from typing import ClassVar, TypedDict


class RelayError(Exception):
    """Root of every error raised by bellhop_cloud."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class ConfigError(RelayError):
    """The configuration file or environment is unusable."""

    code = "config_error"
    title = "Invalid configuration"


class StoreUnavailable(RelayError):
    status = 503
    code = "unavailable"
    title = "Storage unavailable"


class AuthError(RelayError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Unauthenticated(AuthError):
    pass


class InvalidToken(AuthError):
    code = "invalid_token"
    title = "Invalid token"


class TokenExpired(AuthError):
    code = "token_expired"
    title = "Token expired"


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    title = "Wrong email or password"


class RefreshTokenInvalid(AuthError):
    code = "refresh_token_invalid"
    title = "Refresh token is invalid, expired or revoked"


class RefreshTokenReused(AuthError):
    code = "refresh_token_reused"
    title = "Refresh token was already used; the session is revoked"


class EnrolmentTokenInvalid(AuthError):
    code = "enrolment_token_invalid"
    title = "Enrolment token is invalid, expired or already used"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class RoleNotAllowed(Forbidden):
    code = "role_not_allowed"
    title = "Role is above what you may grant"


class NotFound(RelayError):
    status = 404
    code = "not_found"
    title = "Not found"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "No account with that email"


class Conflict(RelayError):
    status = 409
    code = "conflict"
    title = "Conflict"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class LastOwner(Conflict):
    code = "last_owner"
    title = "An organisation keeps at least one owner"


class GatewayOffline(Conflict):
    code = "gateway_offline"
    title = "The hotel's gateway is not connected"


class CommandIdReused(Conflict):
    code = "command_id_reused"
    title = "The command id was used for another command"

    @classmethod
    def of(cls, command_id: str) -> CommandIdReused:
        """The refusal of `command_id`, in the same words on every path."""
        return cls(f"command_id {command_id!r} was already used for another command")


class CommandTimedOut(RelayError):
    status = 504
    code = "command_timed_out"
    title = "No result within the time waited"


class FieldError(TypedDict):
    """Where in the request a problem is (`["body", "name"]`) and what, never the value."""

    loc: list[str | int]
    msg: str


class InvalidRequest(RelayError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"

    def __init__(
        self, detail: str | None = None, *, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail)
        self.errors = errors


class BadSignature(InvalidRequest):
    code = "bad_signature"
    title = "Signature does not verify"


class BodyTooLarge(RelayError):
    status = 413
    code = "too_large"
    title = "Request body too large"


class RateLimited(RelayError):
    status = 429
    code = "rate_limited"
    title = "Too many attempts"

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
