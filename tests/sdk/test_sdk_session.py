"""A session resumed from saved tokens (`CloudLogin.from_session`), `on_rotate`, and the
CLI's saved session built on them, against a real relay: a refresh token is spent once,
even by two holders of the same saved file refreshing at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path as FsPath

import pytest
from bellhop_sdk import CloudLogin, SessionTokens, Unauthenticated
from bellhop_sdk.cloud import CloudTransport

from bellhop_cli.ctl.session import Session, SessionLogin
from tests.sdk.conftest import SdkSite


async def logged_in(site: SdkSite) -> SessionTokens:
    """A fresh manager session's tokens, as `on_rotate` hands them over."""
    got: list[SessionTokens] = []
    account = site.manager
    async with CloudLogin(
        site.relay_url, account.email, account.password, trust_env=False, on_rotate=got.append
    ) as login:
        token = await login.login()
    assert [t.access_token for t in got] == [token]
    assert got[0].access_expires_at > time.time()
    return got[0]


async def works(site: SdkSite, token: str) -> None:
    """The relay takes `token` (a read that needs it)."""

    class Fixed:
        async def token(self) -> str:
            return token

        async def refresh(self) -> str:
            return token

    cloud = CloudTransport(site.relay_url, Fixed(), trust_env=False)
    try:
        assert [h.hotel_id for h in await cloud.list_hotels()] == [site.hotel_id]
    finally:
        await cloud.aclose()


async def test_a_resumed_session_uses_its_access_token_then_rotates(sdk_site: SdkSite) -> None:
    first = await logged_in(sdk_site)
    rotations: list[SessionTokens] = []
    async with CloudLogin.from_session(
        sdk_site.relay_url,
        refresh_token=first.refresh_token,
        access_token=first.access_token,
        access_expires_at=first.access_expires_at,
        on_rotate=rotations.append,
        trust_env=False,
    ) as login:
        assert await login.token() == first.access_token  # still good: nothing spent
        assert rotations == []
        fresh = await login.refresh()
    assert [r.access_token for r in rotations] == [fresh]
    assert rotations[0].refresh_token != first.refresh_token
    await works(sdk_site, fresh)
    # The rotated refresh token is the one left: a session resumed from it refreshes.
    async with CloudLogin.from_session(
        sdk_site.relay_url, refresh_token=rotations[0].refresh_token, trust_env=False
    ) as again:
        await works(sdk_site, await again.token())


async def test_a_resumed_session_whose_refresh_token_is_gone_is_unauthenticated(
    sdk_site: SdkSite,
) -> None:
    first = await logged_in(sdk_site)
    async with CloudLogin.from_session(
        sdk_site.relay_url, refresh_token=first.refresh_token, trust_env=False
    ) as login:
        await login.logout()  # the relay ends the session
    async with CloudLogin.from_session(
        sdk_site.relay_url, refresh_token=first.refresh_token, trust_env=False
    ) as login:
        with pytest.raises(Unauthenticated):
            await login.token()  # no password to log in again with


async def test_two_holders_of_the_saved_session_spend_its_refresh_token_once(
    sdk_site: SdkSite, tmp_path: FsPath
) -> None:
    """Two `bellhop ctl` processes with the same expired access token refresh at once:
    the file lock lets one spend the refresh token; the other reads what it saved."""
    first = await logged_in(sdk_site)
    path = tmp_path / "bellhop" / "ctl-session.json"
    Session(
        cloud_url=sdk_site.relay_url,
        email=sdk_site.manager.email,
        refresh_token=first.refresh_token,
        access_token=first.access_token,
        access_expires_at=time.time() - 1,  # expired: both must refresh
    ).save(path)
    holders = [SessionLogin(path, Session.load(path) or Session()) for _ in range(2)]
    tokens = await asyncio.gather(*(h.token() for h in holders))
    saved = Session.load(path)
    assert saved is not None
    assert tokens[0] == tokens[1] == saved.access_token
    assert saved.refresh_token != first.refresh_token
    assert saved.access_expires_at > time.time()
    await works(sdk_site, tokens[0])  # a refresh token spent twice would end the session
    # A refused token (as a server says after a restart of the relay's keys) refreshes again.
    again = await holders[1].refresh()
    assert again != tokens[0]
    reread = Session.load(path)
    assert reread is not None
    assert reread.access_token == again
    await works(sdk_site, again)
