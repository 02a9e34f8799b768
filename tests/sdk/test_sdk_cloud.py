"""The cloud transport against a real relay bridged to a real gateway (tests/sdk/conftest.py),
and what both paths must agree on for the same change."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from bellhop_sdk.auth import CloudLogin
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.errors import CommandRejected
from bellhop_sdk.lan import LanTransport
from bellhop_sdk.models import (
    AckResult,
    Alert,
    AlertState,
    CommandStatus,
    DesiredState,
    Event,
    FleetTarget,
    Gap,
    Path,
    TelemetryPoint,
    from_ms,
    state_key,
)

from tests.sdk.conftest import DEVICES, ENV, LIGHT, ROOM, THERMOSTAT, SdkSite
from tests.sdk.scenario import eventually, first_state_event


async def test_hotel_rooms_and_devices_with_freshness(
    sdk_site: SdkSite, cloud: CloudTransport
) -> None:
    assert await cloud.probe(2)
    hotels = await cloud.list_hotels()
    assert [h.hotel_id for h in hotels] == [sdk_site.hotel_id]
    hotel = await cloud.get_hotel(sdk_site.hotel_id)
    assert hotel.org_id == sdk_site.org_id
    assert hotel.timezone == "Europe/Lisbon"
    assert hotel.freshness.path is Path.CLOUD
    assert hotel.freshness.stale_since is None  # the gateway is bridged
    rooms = await cloud.list_rooms(sdk_site.hotel_id)
    assert [r.room_id for r in rooms] == [ROOM]
    devices = await cloud.list_devices(sdk_site.hotel_id)
    assert {d.device_id: d.kind for d in devices} == DEVICES
    assert all(d.room_id == ROOM and d.online for d in devices)
    thermostat = await cloud.get_device(sdk_site.hotel_id, THERMOSTAT)
    assert thermostat.freshness.path is Path.CLOUD
    # Stale exactly when the relay says so; as of its last contact when it has one.
    raw = sdk_site.tenant.get(f"/devices/{THERMOSTAT}")
    assert thermostat.freshness.stale is raw["stale"]
    if thermostat.last_seen is not None:
        assert thermostat.freshness.as_of == thermostat.last_seen


async def test_reported_state_reaches_the_cloud(sdk_site: SdkSite, cloud: CloudTransport) -> None:
    values = {"temperature": 19.5, "setpoint": 20}
    await sdk_site.devices.report_state(THERMOSTAT, values)

    async def reported() -> bool:
        device = await cloud.get_device(sdk_site.hotel_id, THERMOSTAT)
        return dict(device.reported) == values

    await eventually(reported, "the report read through the cloud")


async def test_desired_state_set_and_read(sdk_site: SdkSite, cloud: CloudTransport) -> None:
    before = await cloud.get_desired(sdk_site.hotel_id, THERMOSTAT)
    state = await cloud.set_desired(sdk_site.hotel_id, THERMOSTAT, {"setpoint": 23.5})
    assert isinstance(state, DesiredState)
    assert state.outcome in {"merged", "queued"}

    async def merged() -> DesiredState | None:
        read = await cloud.get_desired(sdk_site.hotel_id, THERMOSTAT)
        return read if read.version > before.version and not read.pending else None

    read = await eventually(merged, "the change merged on the gateway")
    assert read is not None
    assert read.values["setpoint"] == 23.5
    assert read.change_id is not None
    assert {o.field for o in read.outcomes} == {"setpoint"}


async def test_a_command_and_a_rejected_one(sdk_site: SdkSite, cloud: CloudTransport) -> None:
    command_id = f"cloud-{secrets.token_hex(4)}"
    done = await cloud.send_command(
        sdk_site.hotel_id, THERMOSTAT, "set_setpoint", {"setpoint": 21}, command_id=command_id
    )
    assert done.status is CommandStatus.SUCCEEDED
    assert dict(done.result or {}) == {"setpoint": 21}
    assert done.requested_by is not None
    assert done.requested_by.startswith("cloud:")
    polled = await cloud.get_command(sdk_site.hotel_id, command_id)
    assert polled.status is CommandStatus.SUCCEEDED
    assert polled.completed_at == done.completed_at
    with pytest.raises(CommandRejected) as rejected:
        await cloud.send_command(
            sdk_site.hotel_id,
            THERMOSTAT,
            "set_setpoint",
            {"fail": True},
            command_id=f"cloud-{secrets.token_hex(4)}",
        )
    assert rejected.value.command is not None
    assert rejected.value.command.status is CommandStatus.FAILED
    assert "bad_params" in (rejected.value.command.error or "")
    assert rejected.value.path is Path.CLOUD


async def test_fleet_command(sdk_site: SdkSite, cloud: CloudTransport) -> None:
    fleet = await cloud.send_fleet_command(
        sdk_site.hotel_id,
        FleetTarget(device_ids=(LIGHT,)),
        "set_light",
        {"on": False},
        fleet_id=f"cloud-{secrets.token_hex(4)}",
    )
    assert fleet.targeted == 1
    assert fleet.counts == {CommandStatus.SUCCEEDED: 1}
    assert fleet.commands[0].device_id == LIGHT


async def test_alerts_and_acknowledgement_seen_alike_on_the_lan(
    sdk_site: SdkSite, cloud: CloudTransport, lan: LanTransport
) -> None:
    await sdk_site.devices.breach()

    async def raised() -> list[Alert]:
        alerts = await cloud.list_alerts(sdk_site.hotel_id, active_only=True)
        return [a for a in alerts if a.kind == "breach" and a.state is AlertState.RAISED]

    (alert,) = await eventually(raised, "a breach alert in the cloud")
    first = await cloud.acknowledge_alert(sdk_site.hotel_id, alert.alert_id, note="seen")
    assert first.outcome is AckResult.ACKNOWLEDGED
    again = await cloud.acknowledge_alert(sdk_site.hotel_id, alert.alert_id)
    assert again.outcome is AckResult.ALREADY_ACKNOWLEDGED

    async def acknowledged() -> list[Alert]:
        alerts = await cloud.list_alerts(sdk_site.hotel_id)
        return [a for a in alerts if a.alert_id == alert.alert_id and a.acknowledged_at]

    (in_cloud,) = await eventually(acknowledged, "the acknowledgement in the cloud")
    (on_lan,) = [
        a for a in await lan.list_alerts(sdk_site.hotel_id) if a.alert_id == alert.alert_id
    ]
    # The same alert on both paths: same who, when (to the millisecond) and note.
    assert on_lan.state is in_cloud.state is AlertState.ACKNOWLEDGED
    assert on_lan.acknowledged_by == in_cloud.acknowledged_by
    assert on_lan.acknowledged_at == in_cloud.acknowledged_at
    assert on_lan.raised_at == in_cloud.raised_at
    assert on_lan.note == in_cloud.note == "seen"
    assert (on_lan.kind, on_lan.severity) == (in_cloud.kind, in_cloud.severity)


async def test_telemetry_history(sdk_site: SdkSite, cloud: CloudTransport) -> None:
    ts = int(time.time() * 1000) - secrets.randbelow(10**6)
    await sdk_site.devices.telemetry(ENV, {"humidity": 42.5}, ts)

    async def stored() -> list[TelemetryPoint]:
        points = await cloud.telemetry(sdk_site.hotel_id, ENV, "humidity")
        return [p for p in points if p.at == from_ms(ts)]

    (point,) = await eventually(stored, "the reading in the relay's history")
    assert point.value == 42.5
    assert await cloud.gateway_backlog(sdk_site.hotel_id) is not None


async def test_events_carry_a_state_change_and_the_page_has_it(
    sdk_site: SdkSite, cloud: CloudTransport
) -> None:
    event, reports = await first_state_event(sdk_site, cloud.events(sdk_site.hotel_id))
    assert event.path is Path.CLOUD
    assert event.event_id is not None
    assert event.room_id == ROOM
    ts = int(event.key[2])
    assert event.key == state_key(THERMOSTAT, from_ms(ts))
    assert dict(event.data["values"]) == reports[ts]
    page = await cloud.recent_events(sdk_site.hotel_id, limit=1000)
    assert not page.gap
    assert event.key in {e.key for e in page.events}
    # Resuming after the newest id gives nothing old again.
    later = await cloud.recent_events(sdk_site.hotel_id, after=page.last_event_id)
    assert not later.gap
    assert all(e.event_id != page.last_event_id for e in later.events)


async def test_the_same_change_is_the_same_event_on_both_paths(
    sdk_site: SdkSite, cloud: CloudTransport, lan: LanTransport
) -> None:
    """Natural key, time (to the millisecond) and data agree on the LAN and the cloud."""
    seen: dict[Path, dict[tuple[str, ...], Event]] = {Path.LAN: {}, Path.CLOUD: {}}

    async def watch(stream: AsyncIterator[Event | Gap]) -> None:
        async for item in stream:
            if isinstance(item, Event) and item.kind == "state":
                seen[item.path][item.key] = item

    watchers = [
        asyncio.create_task(watch(lan.events(sdk_site.hotel_id))),
        asyncio.create_task(watch(cloud.events(sdk_site.hotel_id))),
    ]
    try:
        # Neither stream says when it is subscribed: report until a report reaches both.
        async with asyncio.timeout(30):
            while not (both := seen[Path.LAN].keys() & seen[Path.CLOUD].keys()):
                await sdk_site.devices.report_state(THERMOSTAT, {"temperature": 18.5})
                await asyncio.sleep(0.5)
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    for key in both:
        on_lan, in_cloud = seen[Path.LAN][key], seen[Path.CLOUD][key]
        assert on_lan.at == in_cloud.at == from_ms(int(key[2]))
        assert on_lan.data == in_cloud.data
        assert (on_lan.room_id, on_lan.hotel_id) == (in_cloud.room_id, in_cloud.hotel_id)


async def test_a_cloud_login_refreshes_on_demand_and_before_expiry(sdk_site: SdkSite) -> None:
    """Refreshes rotate the one-time refresh token (a reused one would end the session), a
    refresh asked for twice at once is one, and `token()` refreshes ahead of expiry."""
    clock = [0.0]
    account = sdk_site.manager
    login = CloudLogin(
        sdk_site.relay_url, account.email, account.password, trust_env=False,
        clock=lambda: clock[0],
    )  # fmt: skip
    transport = sdk_site.cloud(login)
    try:
        first = await login.login()
        assert await login.refresh() == first  # within a second of the last: the same one
        clock[0] += 5
        second = await login.refresh()
        clock[0] += 5
        third = await login.refresh()  # the rotated refresh token was kept and is good
        assert len({first, second, third}) == 3
        assert await login.token() == third
        clock[0] += login.expires_in_s - 10  # inside the refresh margin
        fourth = await login.token()
        assert fourth != third
        assert (await transport.get_hotel(sdk_site.hotel_id)).hotel_id == sdk_site.hotel_id
        await login.logout()
        assert not login.logged_in
        assert await login.token() not in {first, second, third, fourth}  # logged in again
    finally:
        await transport.aclose()
        await login.aclose()
