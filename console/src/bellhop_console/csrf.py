"""CSRF: a random token per session, in every form, checked on every POST.

The session cookie is SameSite=Strict already; the token is the second lock,
for browsers or proxies that do not honour SameSite. Before login there is no
session yet, so the login form pairs its token with a short-lived HttpOnly
cookie (double submit). Forms send the token as the `csrf_token` field; the
page's script sends the same value in the `X-CSRF-Token` header.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from starlette.datastructures import FormData
from starlette.requests import Request

__all__ = ["FIELD", "HEADER", "LOGIN_COOKIE", "CsrfRefused", "checked_form", "new_token"]

FIELD: Final = "csrf_token"
HEADER: Final = "x-csrf-token"
LOGIN_COOKIE: Final = "bellhop_login_csrf"


class CsrfRefused(Exception):
    """A POST without the session's token (or with another one)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; nothing matches a missing token."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


async def checked_form(request: Request, expected: str | None) -> FormData:
    """The POST's form, once its token (field or header) matches `expected`."""
    form = await request.form()
    given = form.get(FIELD)
    token = given if isinstance(given, str) else request.headers.get(HEADER)
    if not matches(expected, token):
        raise CsrfRefused("the form's security token is missing or does not match")
    return form
