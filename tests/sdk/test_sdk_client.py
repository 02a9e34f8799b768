"""BellhopClient against a real gateway and relay: the same scenario on the LAN path and on
the cloud path gives the same results (models compared without what says how they were
served), and the client says which path served each call."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bellhop_sdk import (
    AckResult,
    AlertState,
    BellhopClient,
    Command,
    CommandRejected,
    CommandStatus,
    Event,
    FleetTarget,
    Gap,
    NotFound,
    Path,
)
from bellhop_sdk.auth import CloudLogin

from tests.sdk.conftest import DEVICES, DOOR, ENV, LIGHT, ROOM, THERMOSTAT, SdkSite
from tests.support.waiting import until

# What only one path knows, or knows differently, by design (models.py says why).
PATH_ONLY = {
    "freshness",
    "desired",  # the cloud's device read carries no desired state
    "reported_at",
    "reported_version",
    "delta",
    "last_seen",  # the LAN's is the gateway's last contact, the cloud's its copy's
    "name",  # commands: the LAN's result does not repeat the name
    "params",
    "requested_at",
    "expires_at",
    "requested_by",
}


def plain(model: Any) -> Any:
    """A model as a dict without its path-only fields, recursively."""
    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return {
            f.name: plain(getattr(model, f.name))
            for f in dataclasses.fields(model)
            if f.name not in PATH_ONLY
        }
    if isinstance(model, list | tuple):
        return [plain(m) for m in model]
    return model


@pytest.fixture
async def clients(
    sdk_site: SdkSite, manager_login: CloudLogin
) -> AsyncIterator[tuple[BellhopClient, BellhopClient]]:
    """The manager on the LAN only, and on the cloud only: one login for both."""
    on_lan = BellhopClient(lan=sdk_site.lan(manager_login), credentials=manager_login)
    on_cloud = BellhopClient(cloud=sdk_site.cloud(manager_login), credentials=manager_login)
    async with on_lan, on_cloud:
        yield on_lan, on_cloud


async def test_reads_are_the_same_on_both_paths(
    sdk_site: SdkSite, clients: tuple[BellhopClient, BellhopClient]
) -> None:
    hotel_id = sdk_site.hotel_id
    on_lan, on_cloud = clients
    await sdk_site.devices.report_state(THERMOSTAT, {"temperature": 21.5, "setpoint": 22})
    await sdk_site.devices.report_state(LIGHT, {"on": True, "brightness": 40})

    async def settled() -> bool:
        lan_t = await on_lan.device(hotel_id, THERMOSTAT)
        cloud_t = await on_cloud.device(hotel_id, THERMOSTAT)
        lan_l = await on_lan.device(hotel_id, LIGHT)
        cloud_l = await on_cloud.device(hotel_id, LIGHT)
        return (
            lan_t.reported == cloud_t.reported == {"temperature": 21.5, "setpoint": 22}
            and lan_l.reported == cloud_l.reported
        )

    await eventually(settled, "both paths hold the reported state")

    assert [h.hotel_id for h in await on_lan.hotels()] == [hotel_id]
    assert on_lan.last_path is Path.LAN
    assert hotel_id in [h.hotel_id for h in await on_cloud.hotels()]
    assert on_cloud.last_path is Path.CLOUD

    lan_rooms = await on_lan.rooms(hotel_id)
    cloud_rooms = await on_cloud.rooms(hotel_id)
    assert [(r.room_id, r.floor) for r in lan_rooms] == [(r.room_id, r.floor) for r in cloud_rooms]
    assert [r.room_id for r in lan_rooms] == [ROOM]

    lan_devices = sorted(await on_lan.devices(hotel_id), key=lambda d: d.device_id)
    cloud_devices = sorted(await on_cloud.devices(hotel_id), key=lambda d: d.device_id)
    assert {d.device_id for d in lan_devices} == set(DEVICES)
    assert plain(lan_devices) == plain(cloud_devices)
    for d in lan_devices:
        assert d.freshness.path is Path.LAN
        assert d.freshness.stale_since is None  # online: current
    assert all(d.freshness.path is Path.CLOUD for d in cloud_devices)

    with pytest.raises(NotFound) as lan_err:
        await on_lan.device(hotel_id, "r999-nothing")
    with pytest.raises(NotFound) as cloud_err:
        await on_cloud.device(hotel_id, "r999-nothing")
    assert lan_err.value.path is Path.LAN
    assert cloud_err.value.path is Path.CLOUD


async def test_commands_alerts_and_telemetry_are_the_same_on_both_paths(
    sdk_site: SdkSite, clients: tuple[BellhopClient, BellhopClient]
) -> None:
    hotel_id = sdk_site.hotel_id
    on_lan, on_cloud = clients

    # A command: the same result whichever path sent it; the client made the ids.
    lan_cmd = await on_lan.send_command(hotel_id, LIGHT, "set_brightness", {"brightness": 30})
    cloud_cmd = await on_cloud.send_command(hotel_id, LIGHT, "set_brightness", {"brightness": 30})
    assert lan_cmd.command_id != cloud_cmd.command_id
    assert lan_cmd.status is cloud_cmd.status is CommandStatus.SUCCEEDED
    assert lan_cmd.result == cloud_cmd.result == {"brightness": 30}
    assert lan_cmd.freshness.path is Path.LAN
    assert cloud_cmd.freshness.path is Path.CLOUD
    for client in clients:
        with pytest.raises(CommandRejected) as rejected:
            await client.send_command(hotel_id, LIGHT, "set_brightness", {"fail": True})
        assert rejected.value.command is not None
        assert rejected.value.command.error == "bad_params: fail"

    # A fleet command, with progress once per device.
    seen: dict[Path, list[str]] = {Path.LAN: [], Path.CLOUD: []}
    fleets = []
    for path, client in zip((Path.LAN, Path.CLOUD), clients, strict=True):
        fleets.append(
            await client.fleet_command(
                hotel_id,
                FleetTarget(device_ids=(LIGHT, THERMOSTAT)),
                "ping",
                progress=functools.partial(note, seen[path]),
            )
        )
    for path, fleet in zip((Path.LAN, Path.CLOUD), fleets, strict=True):
        assert sorted(seen[path]) == sorted([LIGHT, THERMOSTAT])
        assert fleet.targeted == 2
        assert fleet.counts == {CommandStatus.SUCCEEDED: 2}

    # Desired state: set on one path, read on the other.
    before = await on_lan.desired(hotel_id, THERMOSTAT)
    lan_set = await on_lan.set_desired(hotel_id, THERMOSTAT, {"setpoint": 23})
    assert lan_set.version == before.version + 1

    async def desired_synced() -> bool:
        remote = await on_cloud.desired(hotel_id, THERMOSTAT)
        return remote.version == lan_set.version and remote.values == lan_set.values

    await eventually(desired_synced, "the cloud has the LAN's desired state")

    # An alert: the same on both paths, acknowledged on one, seen so on the other.
    await sdk_site.devices.breach(DOOR)

    async def raised() -> bool:
        lan_alerts = await on_lan.alerts(hotel_id, active_only=True)
        cloud_alerts = await on_cloud.alerts(hotel_id, active_only=True)
        return bool(lan_alerts) and plain(lan_alerts) == plain(cloud_alerts)

    await eventually(raised, "both paths hold the same active alerts")
    alert = (await on_lan.alerts(hotel_id, active_only=True))[0]
    assert alert.device_id == DOOR
    outcome = await on_cloud.acknowledge_alert(hotel_id, alert.alert_id, note="on my way")
    assert outcome.outcome in (AckResult.ACKNOWLEDGED, AckResult.QUEUED)

    async def acked_on_lan() -> bool:
        lan_alerts = {a.alert_id: a for a in await on_lan.alerts(hotel_id)}
        return lan_alerts[alert.alert_id].state is AlertState.ACKNOWLEDGED

    await eventually(acked_on_lan, "the acknowledgement reached the gateway")
    again = await on_lan.acknowledge_alert(hotel_id, alert.alert_id)
    assert again.outcome is AckResult.ALREADY_ACKNOWLEDGED

    # Telemetry: the same points on both paths.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    base = int(start.timestamp() * 1000)
    for i in range(5):
        await sdk_site.devices.telemetry(ENV, {"humidity": 40.0 + i}, base + i * 1000)

    last: dict[Path, list[Any]] = {}

    async def points_synced() -> bool:
        last[Path.LAN] = await on_lan.telemetry(hotel_id, ENV, "humidity", since=start)
        last[Path.CLOUD] = await on_cloud.telemetry(hotel_id, ENV, "humidity", since=start)
        return len(last[Path.LAN]) == 5 and last[Path.LAN] == last[Path.CLOUD]

    try:
        await eventually(points_synced, "both paths hold the same telemetry")
    except TimeoutError as exc:
        raise AssertionError(f"telemetry since {start}: {last}") from exc


async def test_events_are_the_same_on_both_paths(
    sdk_site: SdkSite, clients: tuple[BellhopClient, BellhopClient]
) -> None:
    hotel_id = sdk_site.hotel_id
    got: dict[Path, list[Event | Gap]] = {Path.LAN: [], Path.CLOUD: []}

    async def follow(client: BellhopClient, path: Path) -> None:
        async for item in client.events(hotel_id):
            got[path].append(item)

    tasks = [
        asyncio.create_task(follow(c, p))
        for c, p in zip(clients, (Path.LAN, Path.CLOUD), strict=True)
    ]
    try:
        sent: list[int] = []

        async def both_saw_all() -> bool:
            if len(sent) < 20:
                sent.append(
                    await sdk_site.devices.report_state(
                        THERMOSTAT, {"temperature": 20 + len(sent) / 10}
                    )
                )
            keys = {
                p: {e.key for e in got[p] if isinstance(e, Event) and e.kind == "state"}
                for p in got
            }
            wanted = {("state", THERMOSTAT, str(ms)) for ms in sent[-5:]}
            return wanted <= keys[Path.LAN] and wanted <= keys[Path.CLOUD]

        await eventually(both_saw_all, "the last state changes on both paths", timeout=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lan_states = {e.key: e for e in got[Path.LAN] if isinstance(e, Event) and e.kind == "state"}
    cloud_states = {e.key: e for e in got[Path.CLOUD] if isinstance(e, Event) and e.kind == "state"}
    common = set(lan_states) & set(cloud_states)
    assert len(common) >= 5
    for key in common:
        assert lan_states[key].data["values"] == cloud_states[key].data["values"]
        assert lan_states[key].room_id == cloud_states[key].room_id == ROOM
    assert all(e.path is Path.LAN for e in got[Path.LAN])
    assert all(e.path is Path.CLOUD for e in got[Path.CLOUD])


def note(into: list[str], command: Command) -> None:
    into.append(command.device_id)


async def eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    """Until `check()` is true; it is awaited again each time after a short pause."""
    await until(check, timeout, what, every=0.05)
