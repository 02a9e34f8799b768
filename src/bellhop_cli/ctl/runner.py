"""Running one `bellhop ctl` command: the client, signals, errors and exit codes.

Errors print one line on stderr, `error: <message> (<code>)`, with the server's code,
and exit with the code of their class (`EXIT_CODES`; `bellhop ctl --help` lists them).
Ctrl-C and SIGTERM cancel the command, close the client (the prober, both transports,
an open event stream) and exit 130 and 143.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Final

from bellhop_sdk import (
    BellhopClient,
    BellhopError,
    CommandRejected,
    CommandTimedOut,
    Conflict,
    Forbidden,
    GatewayOffline,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    StaticToken,
    Unauthenticated,
    Unavailable,
    Unsupported,
)
from bellhop_sdk.transport import TokenSource

from bellhop_cli.ctl import commands
from bellhop_cli.ctl.output import Output
from bellhop_cli.ctl.session import Session, SessionLogin, session_file

__all__ = ["EXIT_CODES", "exit_code", "main"]

EXIT_OTHER: Final = 1
# The exit code of each error class; a subclass takes its nearest listed ancestor's.
EXIT_CODES: Final[dict[type[BellhopError], int]] = {
    Unauthenticated: 3,
    Forbidden: 4,
    NotFound: 5,
    InvalidRequest: 6,
    Conflict: 7,
    GatewayOffline: 8,
    Unavailable: 9,  # Unreachable too: no path answered
    CommandTimedOut: 10,
    CommandRejected: 11,
    RateLimited: 12,
    ServerError: 13,
    Unsupported: 14,
}
SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def exit_code(exc: BellhopError) -> int:
    for kind in type(exc).__mro__:
        if kind in EXIT_CODES:
            return EXIT_CODES[kind]
    return EXIT_OTHER


class Context:
    """What a command works with: its arguments, the output, the session and the client."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.session_path = session_file()
        self.session = Session.load(self.session_path)
        self.secret = ""  # login's password or LAN token, read before the event loop
        saved = self.session or Session()
        cloud: str | None = args.cloud or saved.cloud_url
        lan: str | None = args.lan or saved.lan_target
        if args.via == "lan":
            cloud = None
        elif args.via == "cloud":
            lan = None
        self.cloud_url = cloud
        self.lan_target = lan

    def credentials(self) -> TokenSource:
        session = self.session
        if session is None:
            raise Unauthenticated("not logged in: run `bellhop ctl login`", code="not_logged_in")
        if session.lan_token:
            return StaticToken(session.lan_token)
        return SessionLogin(self.session_path, session, timeout_s=self.args.call_timeout)

    def client(self) -> BellhopClient:
        credentials = self.credentials()
        if self.cloud_url is None and self.lan_target is None:
            raise InvalidRequest(
                "no path: pass --lan HOST:PORT or --cloud URL (or log in with them)",
                code="no_path",
            )
        return BellhopClient(
            cloud_url=self.cloud_url,
            lan_target=self.lan_target,
            credentials=credentials,
            timeout_s=self.args.call_timeout,
        )


async def _guarded(work: Callable[[], Awaitable[int]]) -> int:
    """Run `work`; SIGINT/SIGTERM cancel it (its clean-up runs) and give 128 + signal."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work())
    got: list[int] = []

    def stop(signum: int) -> None:
        got.append(signum)
        task.cancel()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if got:
            return 128 + got[0]
        raise
    finally:
        for sig in SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def main(args: argparse.Namespace) -> int:
    out = Output(as_json=args.json)
    try:
        ctx = Context(args, out)
        handler = commands.HANDLERS[args.ctl_command]
        prepare = commands.PREPARE.get(args.ctl_command)
        if prepare is not None:
            prepare(ctx)  # prompts, before the event loop
        return asyncio.run(_guarded(lambda: handler(ctx)))
    except BellhopError as exc:
        code = exc.code or type(exc).__name__
        where = f" [via {exc.path.value}]" if exc.path is not None else ""
        out.err.print(f"error: {exc.message}{where} ({code})", markup=False, highlight=False)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
