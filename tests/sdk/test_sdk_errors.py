"""One fault, one error class, whichever path served the call; each error carries the
server's own code and message."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from bellhop_sdk.auth import CloudLogin, StaticToken
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated, Unreachable
from bellhop_sdk.lan import LanTransport
from bellhop_sdk.models import CommandStatus, Path
from bellhop_sdk.transport import TokenSource, Transport

from tests.sdk.conftest import THERMOSTAT, Account, SdkSite
from tests.support.mosquitto import free_port

PATHS = [Path.LAN, Path.CLOUD]


def transport(site: SdkSite, path: Path, tokens: TokenSource) -> Transport:
    return site.lan(tokens) if path is Path.LAN else site.cloud(tokens)


@pytest.fixture
async def viewer_login(sdk_site: SdkSite) -> AsyncIterator[CloudLogin]:
    login = sdk_site.login(sdk_site.viewer)
    try:
        yield login
    finally:
        await login.aclose()


@pytest.mark.parametrize("path", PATHS)
async def test_an_unknown_device_is_not_found(
    sdk_site: SdkSite, manager_login: CloudLogin, path: Path
) -> None:
    t = transport(sdk_site, path, manager_login)
    try:
        with pytest.raises(NotFound) as err:
            await t.get_device(sdk_site.hotel_id, "no-such-device")
    finally:
        await t.aclose()
    assert err.value.path is path
    assert err.value.code == ("NOT_FOUND" if path is Path.LAN else "not_found")
    assert err.value.message


@pytest.mark.parametrize("path", PATHS)
async def test_a_bad_token_is_unauthenticated(sdk_site: SdkSite, path: Path) -> None:
    t = transport(sdk_site, path, StaticToken(f"bht_{secrets.token_urlsafe(32)}"))
    try:
        with pytest.raises(Unauthenticated) as err:
            await t.list_rooms(sdk_site.hotel_id)
    finally:
        await t.aclose()
    assert err.value.path is path
    assert err.value.code in {"UNAUTHENTICATED", "invalid_token", "unauthenticated"}


@pytest.mark.parametrize("path", PATHS)
async def test_a_viewer_may_not_send_commands(
    sdk_site: SdkSite, viewer_login: CloudLogin, path: Path
) -> None:
    """The viewer's cloud login on both paths (the gateway verifies the relay's token)."""
    t = transport(sdk_site, path, viewer_login)
    try:
        device = await t.get_device(sdk_site.hotel_id, THERMOSTAT)  # reading is allowed
        assert device.device_id == THERMOSTAT
        with pytest.raises(Forbidden) as err:
            await t.send_command(
                sdk_site.hotel_id, THERMOSTAT, "set_setpoint", {"setpoint": 21}, command_id="v-1"
            )
    finally:
        await t.aclose()
    assert err.value.path is path
    assert sdk_site.devices.received(THERMOSTAT).count("v-1") == 0


async def test_a_lan_only_viewer_token_may_not_send_commands(sdk_site: SdkSite) -> None:
    t = sdk_site.lan(StaticToken(sdk_site.lan_viewer_token))
    try:
        with pytest.raises(Forbidden) as err:
            await t.send_command(
                sdk_site.hotel_id, THERMOSTAT, "set_setpoint", {"setpoint": 21}, command_id="v-2"
            )
    finally:
        await t.aclose()
    assert err.value.code == "PERMISSION_DENIED"


@pytest.mark.parametrize("path", PATHS)
async def test_invalid_arguments_are_an_invalid_request(
    sdk_site: SdkSite, manager_login: CloudLogin, path: Path
) -> None:
    t = transport(sdk_site, path, manager_login)
    try:
        with pytest.raises(InvalidRequest) as err:
            await t.send_command(
                sdk_site.hotel_id, THERMOSTAT, "Bad Name", {}, command_id=secrets.token_hex(4)
            )
    finally:
        await t.aclose()
    assert err.value.path is path
    assert err.value.code == ("INVALID_ARGUMENT" if path is Path.LAN else "invalid_request")


@pytest.mark.parametrize("path", PATHS)
async def test_nothing_listening_is_unreachable(path: Path) -> None:
    port = free_port()
    tokens = StaticToken("bht_unused")
    t: Transport = (
        LanTransport(f"127.0.0.1:{port}", tokens, timeout_s=2)
        if path is Path.LAN
        else CloudTransport(f"http://127.0.0.1:{port}", tokens, timeout_s=2, trust_env=False)
    )
    try:
        assert not await t.probe(0.5)
        with pytest.raises(Unreachable) as err:
            await t.list_hotels()
    finally:
        await t.aclose()
    assert err.value.path is path


async def test_the_cloud_login_works_on_the_lan(
    sdk_site: SdkSite, manager_login: CloudLogin
) -> None:
    """One login for both paths: the manager's cloud access token commands on the LAN."""
    lan = sdk_site.lan(manager_login)
    try:
        done = await lan.send_command(
            sdk_site.hotel_id,
            THERMOSTAT,
            "set_setpoint",
            {"setpoint": 22},
            command_id=f"m-{secrets.token_hex(4)}",
        )
    finally:
        await lan.aclose()
    assert done.status is CommandStatus.SUCCEEDED


async def test_a_wrong_password_is_unauthenticated(sdk_site: SdkSite) -> None:
    login = sdk_site.login(Account(sdk_site.manager.email, "not the password"))
    try:
        with pytest.raises(Unauthenticated) as err:
            await login.login()
    finally:
        await login.aclose()
    assert err.value.code == "invalid_credentials"
