"""The staff console in a real browser, against a real relay, gateway and devices.

One site, one console process and one browser for the module; each test opens
its own browser context (its own cookies). The test that stops the relay runs last.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Coroutine, Iterator
from typing import Any, Final

import httpx
import pytest

from tests.console.conftest import ConsoleProcess, screenshot
from tests.sdk.conftest import DOOR, LIGHT, ROOM, THERMOSTAT, Account, SdkSite

pytestmark = pytest.mark.timeout(90)
WAIT_MS: Final = 15_000


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in(page: Any, console: ConsoleProcess, account: Account) -> None:
    page.goto(f"{console.url}/login")
    page.get_by_label("E-mail").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/hotels$"))


def on_devices(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a device hub call from a sync test (Playwright's loop owns this thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result(timeout=20)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect(locator)


def no_secret_in(page: Any, site: SdkSite, sid: str) -> None:
    """No session id, LAN token or access token (a JWT) in the URL or the page's source."""
    html = page.content()
    for secret in (sid, site.lan_token, site.lan_viewer_token):
        assert secret not in html
        assert secret not in page.url
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", html), "a JWT in the page"
    assert "token=" not in page.url


def session_cookie(ctx: Any) -> dict[str, Any]:
    (cookie,) = [c for c in ctx.cookies() if c["name"] == "bellhop_session"]
    return dict(cookie)


def test_sign_in_see_the_rooms_and_a_room(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    page.goto(f"{console.url}/login")
    screenshot(page, "login")
    sign_in(page, console, console_site.manager)
    cookie = session_cookie(context)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP here; Secure with --tls-cert
    # The hotels list: the relay's view, with the gateway's link and backlog.
    link = page.locator(f'a[href="/hotels/{console_site.hotel_id}"]').last
    row = page.locator("tbody tr", has=link)
    expect(row).to_contain_text("connected")
    expect(page.locator("#served-path")).to_have_text("cloud")
    screenshot(page, "hotels")
    no_secret_in(page, console_site, cookie["value"])

    row.get_by_role("link").click()
    tile = page.locator(f'li.tile[data-room="{ROOM}"]')
    expect(tile).to_be_visible()
    expect(page.locator("#served-path")).to_have_text("LAN")
    expect(page.locator("#live-state")).to_contain_text("live")
    screenshot(page, "rooms")
    no_secret_in(page, console_site, cookie["value"])

    tile.get_by_role("link").click()
    for device in (THERMOSTAT, LIGHT, DOOR):
        expect(page.locator(f'section.device[data-device="{device}"]')).to_be_visible()
    expect(page.locator("figure.history svg").first).to_be_visible()
    no_secret_in(page, console_site, cookie["value"])


def test_a_setpoint_is_sent_and_the_new_state_arrives_live(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    now = int(time.time() * 1000)
    for i in range(24):  # the last two hours of temperature, for the history chart
        point = {"temperature": 20.5 + (i % 6) * 0.3}
        on_devices(console_site.devices.telemetry(THERMOSTAT, point, now - (24 - i) * 300_000))
    page = context.new_page()
    sign_in(page, console, console_site.manager)
    section = page.locator(f'section.device[data-device="{THERMOSTAT}"]')
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:  # the gateway stores telemetry in batches: until the chart has it
        page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/{ROOM}")
        if section.locator("figure.history polyline").count() or time.monotonic() > deadline:
            break
    expect(section.locator("figure.history polyline").first).to_be_visible()
    expect(page.locator("#live-state")).to_contain_text("live")
    page.evaluate("window.__sameDocument = true")
    before = len(console_site.devices.received(THERMOSTAT))
    section.get_by_label("Setpoint (°C)").fill("23.5")
    section.get_by_role("button", name="Set temperature").click()
    expect(page.locator("#result")).to_contain_text("set_setpoint on r101-thermostat: succeeded")
    assert len(console_site.devices.received(THERMOSTAT)) == before + 1
    # The device acts on it and reports; the page shows it without a reload.
    on_devices(console_site.devices.report_state(THERMOSTAT, {"setpoint": 23.5, "mode": "heat"}))
    shown = section.locator('[data-f="reported"] [data-key="setpoint"]')
    expect(shown).to_have_text("23.5")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "room")


def test_an_alert_appears_live_and_is_acknowledged_with_a_note(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    sign_in(page, console, console_site.manager)
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}/alerts")
    expect(page.locator("#live-state")).to_contain_text("live")
    known = set(page.locator("li.alert").evaluate_all("els => els.map(e => e.dataset.alert)"))
    on_devices(console_site.devices.breach(DOOR))
    fresh = page.locator("li.alert[data-state=raised]").filter(has_text="breach")
    expect(fresh.first).to_be_visible()
    alert_id = next(
        a for a in fresh.evaluate_all("els => els.map(e => e.dataset.alert)") if a not in known
    )
    item = page.locator(f'li.alert[data-alert="{alert_id}"]')
    screenshot(page, "alerts")
    item.get_by_label("Note").fill("on my way, room 101")
    item.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#result")).to_contain_text("Acknowledged")
    expect(item.locator('[data-f="state"]')).to_have_text("acknowledged")
    expect(item).to_contain_text("on my way, room 101")


def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    sign_in(page, console, console_site.viewer)
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/{ROOM}")
    expect(page.locator(f'section.device[data-device="{THERMOSTAT}"]')).to_be_visible()
    assert page.locator("form.control").count() == 0
    assert page.get_by_role("button", name="Set temperature").count() == 0
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    before = len(console_site.devices.received(LIGHT))
    answer = context.request.post(
        f"{console.url}/hotels/{console_site.hotel_id}/devices/{LIGHT}/command",
        form={"csrf_token": token, "name": "set_light", "p.on": "true"},
    )
    assert answer.status == 403
    assert "role does not allow" in answer.text()
    assert "Traceback" not in answer.text()
    assert len(console_site.devices.received(LIGHT)) == before
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}/alerts")
    assert page.get_by_role("button", name="Acknowledge").count() == 0


def test_a_post_without_the_csrf_token_is_refused(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    sign_in(page, console, console_site.manager)
    url = f"{console.url}/hotels/{console_site.hotel_id}/devices/{LIGHT}/command"
    before = len(console_site.devices.received(LIGHT))
    for form in ({"name": "set_light", "p.on": "true"}, {"name": "set_light", "csrf_token": "x"}):
        answer = context.request.post(url, form=form)
        assert answer.status == 403
        assert "security token" in answer.text()
    # Signing out is a POST too.
    assert context.request.post(f"{console.url}/logout", form={}).status == 403
    assert len(console_site.devices.received(LIGHT)) == before
    # The sign-in form's own token: a login POST without it is refused as well.
    anonymous = httpx.post(
        f"{console.url}/login",
        data={"email": console_site.manager.email, "password": console_site.manager.password},
        timeout=10,
    )
    assert anonymous.status_code == 403
    assert "bellhop_session" not in anonymous.headers.get("set-cookie", "")


def test_an_sdk_error_is_a_friendly_page_with_the_code(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    sign_in(page, console, console_site.manager)
    answer = page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/no-such-room")
    assert answer is not None
    assert answer.status == 404
    expect(page.locator("main")).to_contain_text("No such room")
    answer = page.goto(f"{console.url}/hotels/htl_nosuchhotel")
    assert answer is not None
    assert answer.status == 404
    expect(page.locator(".code")).to_contain_text(re.compile("not_found|NOT_FOUND"))
    assert "Traceback" not in page.content()


def test_a_lan_token_signs_in_on_site_and_logout_ends_the_session(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    page.goto(f"{console.url}/login")
    page.get_by_label("Staff token").fill(console_site.lan_token)
    page.get_by_role("button", name="Sign in on the LAN").click()
    page.wait_for_url(re.compile(r"/hotels$"))
    expect(page.locator("#served-path")).to_have_text("LAN")
    sid = session_cookie(context)["value"]
    no_secret_in(page, console_site, sid)
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/{ROOM}")
    expect(page.get_by_role("button", name="Set temperature")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("main")).to_contain_text("You are signed out")
    # The old id is dead on the server, not only forgotten by the browser.
    old = httpx.get(
        f"{console.url}/hotels", cookies={"bellhop_session": sid}, timeout=10,
        follow_redirects=False,
    )  # fmt: skip
    assert old.status_code == 303
    assert old.headers["location"] == "/login"


def test_a_phone_width_render(browser: Any, console: ConsoleProcess, console_site: SdkSite) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    ctx.set_default_timeout(WAIT_MS)
    try:
        page = ctx.new_page()
        sign_in(page, console, console_site.manager)
        page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/{ROOM}")
        expect(page.get_by_role("button", name="Set temperature")).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"the room page is {wide} px wide at a phone's 390"
        screenshot(page, "phone")
        page.goto(f"{console.url}/hotels/{console_site.hotel_id}")
        expect(page.locator(f'li.tile[data-room="{ROOM}"]')).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        ctx.close()


def test_zz_without_the_cloud_the_console_keeps_working_on_the_lan(
    context: Any, console: ConsoleProcess, console_site: SdkSite
) -> None:
    page = context.new_page()
    sign_in(page, console, console_site.manager)
    expect(page.locator("#served-path")).to_have_text("cloud")
    console_site.relay.stop()
    page.goto(f"{console.url}/hotels")
    expect(page.locator("#served-path")).to_have_text("LAN")
    page.goto(f"{console.url}/hotels/{console_site.hotel_id}/rooms/{ROOM}")
    expect(page.locator("#served-path")).to_have_text("LAN")
    expect(page.locator("#live-state")).to_contain_text("live")
    section = page.locator(f'section.device[data-device="{LIGHT}"]')
    section.get_by_role("button", name="Switch light").click()
    expect(page.locator("#result")).to_contain_text("succeeded via LAN")
    on_devices(console_site.devices.report_state(LIGHT, {"on": True, "brightness": 80}))
    expect(section.locator('[data-f="reported"] [data-key="brightness"]')).to_have_text("80")
