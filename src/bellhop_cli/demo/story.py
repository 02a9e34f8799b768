"""The story the demo tells, with real calls: what a remote manager and the hotels see.

1. A remote command through the relay's REST API (mode wait) reaches a
   simulated thermostat and comes back with its result; the same command id
   sent on the LAN returns that result without running again.
2. A gas leak raises an alert on site; the manager acknowledges it through
   the relay, and the gateway's LAN API shows the same who and when.
3. The relay stops (SIGTERM) while the rooms keep reporting, then starts
   again; each gateway catches up: nothing of its outbox lies past the lanes
   `GET /sync` reports, and the outage's readings are all in the relay.

Then every few seconds a status line per hotel, until the demo is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any, Final

from bellhop_cli.demo.hotel import DemoHotel
from bellhop_cli.demo.narration import DemoError, at_text, now_ms, poll, say
from bellhop_cli.demo.relay import MANAGER, Cloud, DemoRelay

__all__ = ["tell"]

COMMAND_ID: Final = "demo-setpoint-1"
SETPOINT: Final = {"setpoint": 22.5}
LEAK_PPM: Final = 6000
ACK_NOTE: Final = "gas company called; room 101 evacuated"


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


async def tell(relay: DemoRelay, cloud: Cloud, hotels: list[DemoHotel], interval: float) -> None:
    """The whole story, then status lines; returns only by cancellation, raises DemoError."""
    for hotel in hotels:
        await _online(cloud, hotel)
    await _remote_command(cloud, hotels[-1])
    await _remote_acknowledgement(cloud, hotels[0], interval)
    await _outage(relay, cloud, hotels, interval)
    say("story told: the hotels run on (a status line per hotel now and then); Ctrl-C stops")
    while True:
        await asyncio.sleep(max(2.5 * interval, 5.0))
        for hotel in hotels:
            await _status(cloud, hotel)


async def _link(cloud: Cloud, hotel: DemoHotel) -> dict[str, Any]:
    """The hotel's one gateway as `GET /v1/hotels/{h}/sync` shows it."""
    links = await cloud.manager.call("GET", f"/v1/hotels/{hotel.hotel_id}/sync")
    if len(links) != 1:
        raise DemoError(f"{hotel.label}: expected one gateway in /sync, got {len(links)}")
    link: dict[str, Any] = links[0]
    return link


def _lanes(link: dict[str, Any]) -> dict[int, int]:
    from bellhop.bridge.v1 import bridge_pb2

    return {
        bridge_pb2.LANE_BULK: int(link["last_acked_seq"]),
        bridge_pb2.LANE_PRIORITY: int(link["last_acked_priority_seq"]),
    }


async def _online(cloud: Cloud, hotel: DemoHotel) -> None:
    with contextlib.suppress(TimeoutError):  # go on with the devices that made it
        await hotel.sim.wait_online(60)
    status = await hotel.status()
    path = f"/v1/hotels/{hotel.hotel_id}/devices"

    async def listed() -> int | None:
        page = await cloud.manager.call("GET", path, params={"limit": 500})
        count = len(page["items"])
        return count if count >= min(len(hotel.devices), 500) else None

    count = await poll(listed, f"{hotel.label}: the relay to list the devices", timeout=30)
    link = await _link(cloud, hotel)
    hotel.say(
        f"{hotel.sim.online()}/{len(hotel.devices)} simulated devices connected; LAN status:"
        f" {status.devices_online} online, bridge {status.cloud_bridge}; the relay lists"
        f" {count} devices, /sync: connected {str(link['connected']).lower()}"
    )


async def _remote_command(cloud: Cloud, hotel: DemoHotel) -> None:
    from bellhop.common.v1 import common_pb2
    from google.protobuf.json_format import MessageToDict

    device = hotel.device("thermostat")
    path = f"/v1/hotels/{hotel.hotel_id}/devices/{device}/commands"
    body = {"name": "set_setpoint", "params": SETPOINT, "mode": "wait", "command_id": COMMAND_ID}
    say(f"(1) remote command, by the manager: POST {path} {json.dumps(body)}")
    began = time.perf_counter()
    answer = await cloud.manager.call("POST", path, json=body)
    took = (time.perf_counter() - began) * 1000
    hotel.say(
        f"relay answered 200 in {took:.0f} ms: {answer['state']}, result"
        f" {json.dumps(answer['result'])} (REST, bridge, gateway, MQTT, the device's ack)"
    )
    if answer["state"] != "succeeded":
        raise DemoError(f"the remote command ended {answer['state']}: {answer['error']}")
    lan = await hotel.send_command(device, "set_setpoint", SETPOINT, COMMAND_ID)
    same_result = MessageToDict(lan.result) == answer["result"]
    same_moment = lan.completed_at.ToMilliseconds() == _ms(answer["completed_at"])
    same = same_result and same_moment
    outcome = "the same result, completed at the same moment: run once" if same else "DIFFERENT"
    hotel.say(
        f"the same command id on the LAN (SendCommand): "
        f"{common_pb2.CommandStatus.Name(lan.status)}, {outcome}"
    )
    if not same:
        raise DemoError("the LAN returned another result for the same command id")


async def _remote_acknowledgement(cloud: Cloud, hotel: DemoHotel, interval: float) -> None:
    from bellhop.common.v1 import common_pb2

    gas = hotel.device("gas_sensor")
    alerts = f"/v1/hotels/{hotel.hotel_id}/alerts"
    say(f"(2) alert on site: a gas leak in {hotel.label} room 101 ({gas} reads {LEAK_PPM} ppm)")
    hotel.leak_gas(gas, LEAK_PPM)

    async def in_relay(state: str) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = await cloud.manager.call(
            "GET", alerts, params={"state": state}
        )
        return next((a for a in found if a["device_id"] == gas and a["kind"] == "gas"), None)

    wait_s = max(10.0, 5 * interval)
    alert = await poll(lambda: in_relay("raised"), "the gas alert in the relay", timeout=wait_s)
    alert_id = alert["alert_id"]
    hotel.say(
        f"GET {alerts}: alert {alert_id} ({alert['severity']}, raised at"
        f" {alert['raised_at']}) is in the relay, brought by the bridge's priority lane"
    )
    answer = await cloud.manager.call(
        "POST", f"{alerts}/{alert_id}/acknowledge", json={"note": ACK_NOTE}, expect=(200, 202)
    )
    hotel.say(f"POST {alerts}/{alert_id}/acknowledge by the manager: {answer['outcome']}")
    relayed = await poll(lambda: in_relay("acknowledged"), "the acknowledgement in the relay")
    by, at = relayed["acknowledged_by"], _ms(relayed["acknowledged_at"])

    async def on_edge() -> Any:
        found = await hotel.alert(alert_id)
        acked = found is not None and found.state != common_pb2.ALERT_STATE_RAISED
        return found if acked else None

    edge = await poll(on_edge, "the acknowledgement on the edge")
    edge_at = edge.acknowledged_at.ToMilliseconds()
    agree = edge.acknowledged_by == by and edge_at == at and edge.note == ACK_NOTE
    hotel.say(
        f"LAN ListAlerts: {edge.alert_id} {common_pb2.AlertState.Name(edge.state)} by"
        f" {edge.acknowledged_by} at {at_text(edge_at)}, note {edge.note!r}: "
        + ("the same who and when as the relay" if agree else f"DIFFERENT (relay: {by}, {at})")
    )
    if not agree or by != f"cloud:{MANAGER}":
        raise DemoError("the edge and the relay disagree on the acknowledgement")
    hotel.leak_gas(gas, 0)
    hotel.say("the leak is over: the alert clears when the sensor reads normal air again")


async def _outage(relay: DemoRelay, cloud: Cloud, hotels: list[DemoHotel], interval: float) -> None:
    before = {hotel.label: _lanes(await _link(cloud, hotel)) for hotel in hotels}
    pid = relay.proc.pid if relay.proc else "?"
    say(f"(3) outage: the relay stops (SIGTERM to `bellhop cloud run`, pid {pid}); rooms report on")
    began, start_ms = time.monotonic(), now_ms()
    code = await relay.stop()
    say(
        f"relay stopped: exit status {code} after {time.monotonic() - began:.1f} s"
        " (on its way out it tells each bridge shutting_down)"
    )
    if code != 0:
        raise DemoError(f"the relay exited with status {code}")
    hold_until = time.monotonic() + max(4 * interval, 4.0)
    while time.monotonic() < hold_until:
        await asyncio.sleep(max(interval, 1.0))
        for hotel in hotels:
            status = await hotel.status()
            hotel.say(
                f"relay away: LAN status says bridge {status.cloud_bridge}"
                f" ({status.cloud_last_close.split(':', 1)[0]}), {status.cloud_backlog} events"
                f" not yet acknowledged, {status.accepted} messages stored on the edge"
            )
    # While the relay is away, nothing moves its lanes: what the edge holds past the lanes
    # /sync showed before the stop is the backlog the relay has to catch up on.
    backlog: dict[str, tuple[int, dict[int, int]]] = {}
    for hotel in hotels:
        newest = await asyncio.to_thread(hotel.outbox_newest)
        count = await asyncio.to_thread(hotel.outbox_between, before[hotel.label], newest)
        backlog[hotel.label] = count, newest
        hotel.say(
            f"backlog: the edge holds {count} events past the lanes /sync showed"
            f" before the stop ({_lanes_text(before[hotel.label])})"
        )
    restart_ms = now_ms()
    took = await relay.start()
    back_ms = now_ms()
    pid = relay.proc.pid if relay.proc else "?"
    say(f"relay started again: the same command on the same database (pid {pid}), {took:.1f} s")
    await asyncio.gather(
        *(
            _catch_up(
                cloud,
                h,
                before=before[h.label],
                first=backlog[h.label][0],
                upto=backlog[h.label][1],
                back_ms=back_ms,
            )
            for h in hotels
        )
    )
    for hotel in hotels:
        await _points_match(cloud, hotel, start_ms, restart_ms)


def _lanes_text(lanes: dict[int, int], before: dict[int, int] | None = None) -> str:
    from bellhop.bridge.v1 import bridge_pb2

    return ", ".join(
        f"{name} {'' if before is None else f'{before[lane]} -> '}{lanes[lane]}"
        for name, lane in (("bulk", bridge_pb2.LANE_BULK), ("priority", bridge_pb2.LANE_PRIORITY))
    )


async def _catch_up(
    cloud: Cloud,
    hotel: DemoHotel,
    *,
    before: dict[int, int],
    first: int,
    upto: dict[int, int],
    back_ms: int,
) -> None:
    """Until `/sync` says connected and its lanes are past the backlog: every event the
    edge had recorded up to the restart (what it records since is live traffic)."""
    connected_ms: list[int] = []

    async def caught_up() -> dict[str, Any] | None:
        link = await _link(cloud, hotel)
        if not link["connected"]:
            return None
        connected_ms.append(now_ms())
        left = await asyncio.to_thread(hotel.outbox_between, _lanes(link), upto)
        return link if left == 0 else None

    link = await poll(caught_up, f"{hotel.label}: the catch-up", timeout=30, every=0.1)
    done_ms = now_ms()
    hotel.say(
        f"GET /sync: connected again {(connected_ms[0] - back_ms) / 1000:.1f} s after the relay,"
        f" backlog {first} -> 0 after {(done_ms - back_ms) / 1000:.1f} s; lanes applied"
        f" {_lanes_text(_lanes(link), before)}"
    )


async def _points_match(cloud: Cloud, hotel: DemoHotel, start_ms: int, end_ms: int) -> None:
    """The temperature points recorded while the relay was away: as many in the relay."""
    sensors = hotel.temperature_devices()

    async def in_relay(device: str) -> int:
        path = f"/v1/hotels/{hotel.hotel_id}/devices/{device}/telemetry"
        params = {
            "metric": "temperature",
            "start": at_text(start_ms),
            "end": at_text(end_ms),
            "limit": 10_000,
        }
        return len((await cloud.manager.call("GET", path, params=params))["points"])

    counts: list[tuple[int, int]] = []

    async def matching() -> tuple[int, int] | None:
        edge = await asyncio.gather(
            *(hotel.points(d, "temperature", start_ms, end_ms) for d in sensors)
        )
        relay = await asyncio.gather(*(in_relay(d) for d in sensors))
        counts.append((sum(edge), sum(relay)))
        return counts[-1] if counts[-1][0] == counts[-1][1] and counts[-1][0] else None

    try:
        edge, relay = await poll(matching, "the outage's points", timeout=10, every=0.5)
    except DemoError:
        raise DemoError(
            f"{hotel.label}: points during the outage (edge, relay): {counts}"
        ) from None
    hotel.say(
        f"temperature points of its {len(sensors)} sensors recorded during the outage"
        f" ({_clock(start_ms)}-{_clock(end_ms)}): {edge} on the edge (LAN QueryTelemetry),"
        f" {relay} in the relay (REST telemetry): every one arrived"
    )


async def _status(cloud: Cloud, hotel: DemoHotel) -> None:
    status = await hotel.status()
    try:
        link = await _link(cloud, hotel)
        relay = (
            f"/sync: connected {str(link['connected']).lower()},"
            f" bulk lane at {link['last_acked_seq']}"
        )
    except DemoError as exc:
        relay = f"relay unreachable ({exc})"
    hotel.say(
        f"status: {status.devices_online}/{status.devices_total} online,"
        f" {status.accepted} messages stored, {sum(status.rejected.values())} rejected,"
        f" broker {'up' if status.broker_connected else 'DOWN'}, bridge {status.cloud_bridge};"
        f" {relay}"
    )
