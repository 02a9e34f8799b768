"""How a console session ends without a sign-out: the relay refuses its refresh, or it
expires and the sweeper closes it. Against a real relay, gateway and devices."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from bellhop_console import ConsoleConfig
from bellhop_console.sessions import ConsoleSession, SessionStore

from tests.console.conftest import ConsoleProcess
from tests.sdk.conftest import Account, SdkSite
from tests.sdk.scenario import eventually
from tests.support.relay_process import PASSWORD

pytestmark = pytest.mark.timeout(90)
WAIT_S: Final = 15.0


def new_manager(site: SdkSite) -> Account:
    """An account of its own, a manager of the site's hotel, so ending its sessions
    leaves the other tests' accounts alone."""
    account = Account(f"ends.{secrets.token_hex(4)}@example.com")
    with site.relay.http() as http:
        body = {"email": account.email, "password": PASSWORD, "display_name": "ends"}
        assert http.post("/v1/auth/register", json=body).status_code == 201
        grant = {"email": account.email, "role": "manager", "hotel_id": site.tenant.hotel_id}
        answer = http.post(
            f"/v1/orgs/{site.tenant.org_id}/grants", json=grant, headers=site.tenant.headers
        )
        assert answer.status_code == 201, answer.text
    return account


def end_every_session(site: SdkSite, account: Account) -> None:
    """On the relay, through its REST API: a password change ends every session."""
    with site.relay.http() as http:
        login = http.post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
        assert login.status_code == 200, login.text
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        body = {"current_password": account.password, "new_password": PASSWORD + "-changed"}
        answer = http.post("/v1/me/password", json=body, headers=headers)
        assert answer.status_code == 200, answer.text


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(int(WAIT_S * 1000))
    try:
        yield ctx
    finally:
        ctx.close()


def test_the_relay_refusing_a_refresh_ends_the_console_session(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    account = new_manager(console_site)
    page = context.new_page()
    page.goto(f"{console.url}/login")
    page.get_by_label("E-mail").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/hotels$"))
    assert page.locator(f'a[href="/hotels/{console_site.hotel_id}"]').count() > 0
    (cookie,) = [c for c in context.cookies() if c["name"] == "bellhop_session"]

    end_every_session(console_site, account)
    # The hotels page asks the relay: its access token is refused, the refresh too, and
    # the console ends the session rather than signing in again by itself.
    deadline = time.monotonic() + WAIT_S
    while True:
        page.goto(f"{console.url}/hotels")
        if page.get_by_label("Password").count():
            break
        assert time.monotonic() < deadline, "the console kept the ended session"
        page.wait_for_timeout(200)
    assert "Your session has ended" in page.locator("main").inner_text()
    # Ended on the console's side: the old id now redirects to the sign-in page.
    old = httpx.get(
        f"{console.url}/hotels/{console_site.hotel_id}",
        cookies={"bellhop_session": cookie["value"]}, timeout=10, follow_redirects=False,
    )  # fmt: skip
    assert old.status_code == 303
    assert old.headers["location"] == "/login"
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}")
    assert page.url.endswith("/login")


def test_the_sweeper_ends_expired_sessions_here_and_on_the_relay(console_site: SdkSite) -> None:
    # Its own loop in a thread: Playwright's loop owns this one (the module's browser).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, sweeping(console_site)).result(timeout=60)


async def sweeping(console_site: SdkSite) -> None:
    config = ConsoleConfig(cloud_url=console_site.relay_url, lan_target=console_site.lan_target)
    store = SessionStore(config.validate(), sweep_s=0.05)
    ended: list[ConsoleSession] = []
    store.on_end.append(ended.append)
    store.start()
    try:
        account = new_manager(console_site)
        cloud = await store.log_in_cloud(account.email, account.password)
        lan = await store.log_in_lan(console_site.lan_token)
        assert cloud.login is not None
        refresh_token = cloud.login._refresh_token
        assert await store.get(cloud.sid) is cloud

        cloud.expires_at = time.monotonic() - 1  # its shift is over; nobody asks for it
        await eventually(lambda: _settled(lambda: ended == [cloud]), "the sweeper ending it")
        assert len(store) == 1
        assert await store.get(lan.sid) is lan  # the live one is left alone
        assert cloud.ended
        # The relay's session ended with it: its refresh token is refused.
        async with httpx.AsyncClient(base_url=console_site.relay_url, timeout=10) as http:
            answer = await http.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
        assert answer.status_code == 401, answer.text

        lan.expires_at = time.monotonic() - 1
        await eventually(lambda: _settled(lambda: len(store) == 0), "the sweeper ending it")
        assert ended == [cloud, lan]
        assert lan.ended
    finally:
        await store.aclose()


async def _settled(check: Any) -> bool:
    await asyncio.sleep(0)
    return bool(check())
