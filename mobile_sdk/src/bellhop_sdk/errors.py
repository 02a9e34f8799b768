"""One small error hierarchy, the same whichever path served the call.

Every error carries the server's own `code` (a gRPC status name such as
"NOT_FOUND" on the LAN, the problem document's `code` such as "not_found" on
the cloud) and its `message`, and the `path` that raised it. Transports never
let a raw grpc or httpx exception through.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar

from bellhop_sdk.models import Command, CommandStatus, Path

__all__ = [
    "MALFORMED",
    "BellhopError",
    "CommandRejected",
    "CommandTimedOut",
    "Conflict",
    "Forbidden",
    "GatewayOffline",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "Unreachable",
    "Unsupported",
    "check_id",
    "ids_checked",
    "malformed",
    "raise_for",
]


class BellhopError(Exception):
    """Base of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        path: Path | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = path
        # The HTTP status on the cloud path; None on the LAN.
        self.status = status

    def __str__(self) -> str:
        where = f" [{self.path}]" if self.path is not None else ""
        code = f"{self.code}: " if self.code else ""
        return f"{code}{self.message}{where}"


class Unauthenticated(BellhopError):
    """No token, a bad or expired one, or the session ended."""


class Forbidden(BellhopError):
    """The caller's role does not allow this."""


class NotFound(BellhopError):
    """No such hotel, room, device, alert or command (or not visible to the caller)."""


class InvalidRequest(BellhopError):
    """The server refused the arguments (schema, range, unknown field, bad id)."""


class Conflict(BellhopError):
    """The request conflicts with what the server holds (a reused command id, a stale version)."""


class GatewayOffline(BellhopError):
    """The hotel's gateway is not connected to the cloud (also: no path reaches the hotel)."""


class RateLimited(BellhopError):
    """Too many requests; `retry_after_s` says when to try again, if the server said."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        path: Path | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code, path=path, status=status)
        self.retry_after_s = retry_after_s


class _CommandError(BellhopError):
    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        path: Path | None = None,
        status: int | None = None,
        command: Command | None = None,
    ) -> None:
        super().__init__(message, code=code, path=path, status=status)
        # The command as the server last reported it; None when the server said nothing more.
        self.command = command


class CommandTimedOut(_CommandError):
    """No result in time, or the command expired unsent; the device may still act until expiry."""


class CommandRejected(_CommandError):
    """The device acknowledged the command and reported an error; `command.error` says which."""


class ServerError(BellhopError):
    """The server failed (an internal error); its message names the log reference."""


# What reading an answer that is not what the API promises raises: a body that is not
# JSON, a list for an object, a field missing or of another type, a time that does not
# parse. A transport lets them out only from such an answer.
MALFORMED: Final = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def malformed(exc: BaseException, path: Path | None) -> ServerError:
    """The typed error for an answer that does not parse: the kind of fault, never the
    answer's text (which may be anything, of any size)."""
    return ServerError(
        f"the server's answer is not what its API promises ({type(exc).__name__})",
        code="bad_answer",
        path=path,
    )


class Unavailable(BellhopError):
    """The server answered but cannot serve now (its store or broker is down)."""


class Unreachable(Unavailable):
    """This path's server could not be reached: refused, reset, timed out, TLS failure.

    The client takes it as the signal to try the other path; it reaches the
    caller only when no path is left.
    """


class Unsupported(BellhopError):
    """This path has no such operation (e.g. reading a command by id on the LAN)."""


def raise_for(command: Command) -> Command:
    """The command, or the error its outcome means (both paths use this)."""
    path = command.freshness.path
    if command.status is CommandStatus.FAILED:
        raise CommandRejected(
            command.error or "the device reported an error",
            code="failed",
            path=path,
            command=command,
        )
    if command.status is CommandStatus.TIMED_OUT:
        raise CommandTimedOut(
            f"{command.device_id} did not acknowledge {command.command_id} in time;"
            " it may still act on it until it expires",
            code="timed_out",
            path=path,
            command=command,
        )
    if command.status is CommandStatus.EXPIRED:
        raise CommandTimedOut(
            f"{command.command_id} expired before it could be sent; it was never sent",
            code="expired",
            path=path,
            command=command,
        )
    return command


MAX_ID: Final = 200
# Characters that would change a REST URL around an id put in its path (a segment, a
# query, a fragment, an escape), besides white space and control characters.
_URL_SPECIAL: Final = frozenset("/\\?#%")
_C = TypeVar("_C", bound=type)


def check_id(field: str, value: object) -> None:
    """Refuse an id no server issues and no URL may carry: InvalidRequest naming `field`
    (the caller's mistake, found before anything is sent)."""
    if value is None:
        return
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise InvalidRequest(f"{field}: a text of 1 to {MAX_ID} characters", code="invalid_id")
    if value in (".", "..") or any(
        ch in _URL_SPECIAL or ch.isspace() or not ch.isprintable() for ch in value
    ):
        raise InvalidRequest(
            f"{field}: no '/', '\\', '?', '#', '%', white space or control characters, "
            "and not '.' or '..'",
            code="invalid_id",
        )


def _checking(fn: Callable[..., Any], fields: list[str]) -> Callable[..., Any]:
    signature = inspect.signature(fn)

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        bound = signature.bind(*args, **kwargs)
        for field in fields:
            check_id(field, bound.arguments.get(field))

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return await fn(*args, **kwargs)

        return checked_async

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return fn(*args, **kwargs)

    return checked


def ids_checked(cls: _C) -> _C:
    """Every public method of `cls` checks its `..._id` arguments with `check_id` before
    it runs, so that no id reaches a URL's path unchecked, whichever transport serves."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        fields = [p for p in inspect.signature(fn).parameters if p.endswith("_id")]
        if fields:
            setattr(cls, name, _checking(fn, fields))
    return cls
