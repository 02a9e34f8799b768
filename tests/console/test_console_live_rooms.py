"""A hotel's live updates reach each page only as far as its sign-in's grant reaches.

Over HTTP against `bellhop console` as a subprocess, a real relay, gateway and devices:
a manager granted one room (with no devices) follows `/hotels/{h}/live` next to pages
that see the whole hotel, while a device of another room reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest

from tests.console.conftest import ConsoleProcess
from tests.sdk.conftest import ROOM, THERMOSTAT, Account, SdkSite
from tests.support.relay_process import PASSWORD

pytestmark = pytest.mark.timeout(120)
WAIT_S: Final = 20.0
REPORT_EVERY_S: Final = 0.5
GRANTED_ROOM: Final = "999"  # no device lives there: nothing of the site's devices may show


def room_limited_manager(site: SdkSite) -> Account:
    """An account granted the manager role on one room of the hotel, through the relay's API."""
    account = Account(f"one-room.{secrets.token_hex(4)}@example.com")
    with site.relay.http() as http:
        body = {"email": account.email, "password": PASSWORD, "display_name": "one room"}
        assert http.post("/v1/auth/register", json=body).status_code == 201
        grant = {
            "email": account.email,
            "role": "manager",
            "hotel_id": site.tenant.hotel_id,
            "rooms": [GRANTED_ROOM],
        }
        answer = http.post(
            f"/v1/orgs/{site.tenant.org_id}/grants", json=grant, headers=site.tenant.headers
        )
        assert answer.status_code == 201, answer.text
    return account


async def signed_in(console: ConsoleProcess, form: dict[str, str]) -> httpx.AsyncClient:
    """An HTTP client holding a console session (the login form's double-submit token)."""
    http = httpx.AsyncClient(base_url=console.url, timeout=10, trust_env=False)
    page = await http.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    answer = await http.post("/login", data={"csrf_token": found.group(1), **form})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/hotels"
    return http


async def sign_out(http: httpx.AsyncClient) -> None:
    page = await http.get("/hotels")
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None, page.text
    answer = await http.post("/logout", data={"csrf_token": found.group(1)})
    assert answer.status_code == 200, answer.text


class Live:
    """One page's `/hotels/{h}/live` stream, read into a list by a task of its own."""

    def __init__(self, http: httpx.AsyncClient, hotel_id: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._read(http, f"/hotels/{hotel_id}/live"))

    async def _read(self, http: httpx.AsyncClient, url: str) -> None:
        timeout = httpx.Timeout(10, read=None)
        async with http.stream("GET", url, timeout=timeout) as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                if line.startswith("data:"):
                    self.messages.append(json.loads(line[5:]))

    def noted_live(self) -> bool:
        return any(m.get("type") == "live" and m.get("state") == "live" for m in self.messages)

    def saw(self, setpoint: float) -> bool:
        return any(
            m.get("type") == "state"
            and m.get("room_id") == ROOM
            and (m.get("data") or {}).get("values", {}).get("setpoint") == setpoint
            for m in self.messages
        )

    def foreign(self) -> list[dict[str, Any]]:
        """What reached this page of a room other than the granted one."""
        return [
            m
            for m in self.messages
            if m.get("room_id") not in (None, GRANTED_ROOM) or "r101-" in json.dumps(m)
        ]

    async def aclose(self) -> None:
        if self._task.done():
            if not self._task.cancelled():
                self._task.result()  # a failed stream fails the test
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S:g} s"
        await asyncio.sleep(0.05)


async def reported_until_seen(site: SdkSite, pages: list[Live]) -> float:
    """The thermostat reports a new setpoint every half second until every page in
    `pages` received one of them; returns the one they all saw."""
    deadline = time.monotonic() + WAIT_S
    sent: list[float] = []
    while True:
        setpoint = 16.0 + len(sent) * 0.5 + secrets.randbelow(8)
        sent.append(setpoint)
        await site.devices.report_state(THERMOSTAT, {"setpoint": setpoint})
        next_report = time.monotonic() + REPORT_EVERY_S
        while time.monotonic() < next_report:
            for value in sent:
                if all(page.saw(value) for page in pages):
                    return value
            await asyncio.sleep(0.05)
        assert time.monotonic() < deadline, [p.messages for p in pages]


@pytest.fixture
async def sessions(
    console: ConsoleProcess, console_site: SdkSite
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    one_room = room_limited_manager(console_site)
    clients = {
        "whole": await signed_in(
            console,
            {"method": "cloud", "email": console_site.manager.email, "password": PASSWORD},
        ),
        "one_room": await signed_in(
            console, {"method": "cloud", "email": one_room.email, "password": PASSWORD}
        ),
        "lan": await signed_in(console, {"method": "lan", "token": console_site.lan_token}),
    }
    try:
        yield clients
    finally:
        for http in clients.values():
            await http.aclose()


async def test_a_room_limited_page_gets_only_its_rooms_and_never_feeds_the_hotels_pages(
    sessions: dict[str, httpx.AsyncClient], console_site: SdkSite
) -> None:
    hotel_id = console_site.hotel_id
    whole = Live(sessions["whole"], hotel_id)
    await until(whole.noted_live, "the whole-hotel page's feed is live")
    one_room = Live(sessions["one_room"], hotel_id)
    await until(one_room.noted_live, "the room-limited page's feed is live")
    try:
        # Another room's device reports: the whole-hotel page gets it, the other does not.
        await reported_until_seen(console_site, [whole])
        assert one_room.foreign() == []

        # The whole-hotel session ends while the room-limited page stays: the hotel's feed
        # is not handed to the room-limited session, so a new whole-hotel page (a LAN
        # token) still gets every room.
        await whole.aclose()
        await sign_out(sessions["whole"])
        lan = Live(sessions["lan"], hotel_id)
        try:
            await until(lan.noted_live, "the LAN page's feed is live")
            await reported_until_seen(console_site, [lan])
            assert one_room.foreign() == []
            assert one_room.noted_live()
        finally:
            await lan.aclose()
    finally:
        await whole.aclose()
        await one_room.aclose()
