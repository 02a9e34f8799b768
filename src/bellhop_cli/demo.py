"""`bellhop demo`: a whole hotel on one machine, narrated.

Starts a broker (Mosquitto with per-device credentials and ACL if installed,
otherwise the embedded amqtt fallback), the edge gateway with its own SQLite
and LAN API, and simulated rooms. Then it acts like a front-desk app on the
LAN API: a command round trip, a retry that returns the first result, a
device that goes quiet and raises an alert, staff acknowledging it. Runs
until Ctrl-C (or `--duration`), and stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bellhop.demo")


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="run a whole demo hotel on this machine")
    demo.add_argument("--rooms", type=int, default=6, help="simulated rooms (5-6 devices each)")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between device reports")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--workdir", type=Path, default=None, help="keep broker files and SQLite here"
    )
    demo.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)-16s %(message)s",
        datefmt="%H:%M:%S",
    )
    # Per-message library chatter would drown the story.
    for noisy in ("bellhop.sim", "bellhop_edge.mqtt", "mqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The demo prints alerts itself, from the LAN API's live stream.
    logging.getLogger("bellhop_edge.gateway").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(args))
    print("demo stopped cleanly", file=sys.stderr)
    return 0


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} | {text}", flush=True)


async def _demo(args: argparse.Namespace) -> None:
    import grpc
    from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
    from bellhop_devices.sim import Broker, DeviceSpec, SimulatedHotel, floor_of, layout
    from bellhop_edge.auth import LocalTokens, Role
    from bellhop_edge.config import load_config
    from bellhop_edge.gateway import Gateway
    from bellhop_edge.localbroker import MosquittoBroker, local_broker

    hotel_id = "demo-hotel"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bellhop-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "broker").mkdir(exist_ok=True)
    specs = layout(args.rooms)
    broker = local_broker(workdir / "broker")
    gateway_creds = broker.add_gateway(hotel_id)
    device_creds = broker.add_devices(hotel_id, [s.device_id for s in specs])
    broker.start()
    kind = (
        "Mosquitto with per-device credentials and ACL"
        if isinstance(broker, MosquittoBroker)
        else ("embedded amqtt (Mosquitto not installed; loopback, anonymous)")
    )
    _say(f"broker: {kind} on {broker.host}:{broker.port}")
    rooms = sorted({s.room_id for s in specs if s.room_id})
    config = load_config(
        overrides={
            "hotel_id": hotel_id,
            "data_dir": str(workdir / "edge"),
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": gateway_creds.username if gateway_creds else None,
                "password": gateway_creds.password if gateway_creds else None,
            },
            "api": {"listen": "127.0.0.1:0"},
            "liveness": {"heartbeat_timeout_s": max(3 * args.interval, 3.0)},
            "rooms": [{"room_id": r, "name": f"Room {r}", "floor": floor_of(r)} for r in rooms],
            "devices": [
                {"device_id": s.device_id, "room_id": s.room_id, "kind": s.kind.value}
                for s in specs
            ],
        }
    )
    token = LocalTokens(config.data_dir / "staff-tokens.json").create("front-desk", Role.STAFF)
    auth = (("authorization", f"Bearer {token}"),)
    sim_specs = [
        DeviceSpec(s.device_id, s.room_id, s.kind, c.username, c.password)
        if (c := device_creds.get(s.device_id))
        else s
        for s in specs
    ]
    try:
        async with Gateway(config) as gateway:
            _say(
                f"gateway: hotel {hotel_id}, {len(rooms)} rooms, {len(specs)} devices, "
                f"SQLite at {config.database_path}, LAN API on 127.0.0.1:{gateway.api_port}"
            )
            sim = SimulatedHotel(
                hotel_id=hotel_id,
                broker=Broker(broker.host, broker.port),
                devices=sim_specs,
                interval_s=args.interval,
            )
            async with sim, grpc.aio.insecure_channel(f"127.0.0.1:{gateway.api_port}") as channel:
                stub = lan_pb2_grpc.LanServiceStub(channel)
                story = asyncio.create_task(
                    _story(
                        stub,
                        auth,
                        sim,
                        gateway,
                        args,
                    ),
                    name="demo-story",
                )
                watch = asyncio.create_task(_watch_alerts(stub, auth, lan_pb2), name="demo-alerts")
                try:
                    if args.duration is not None:
                        await asyncio.sleep(args.duration)
                    else:
                        await asyncio.Event().wait()
                finally:
                    for task in (story, watch):
                        task.cancel()
                    await asyncio.gather(story, watch, return_exceptions=True)
                    _say("stopping: the gateway drains its writer, then the devices say goodbye")
                    await gateway.close()
    finally:
        broker.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


async def _watch_alerts(stub: Any, auth: Any, lan_pb2: Any) -> None:
    from bellhop_edge.convert import ALERT_KINDS, ALERT_STATES

    kinds = {v: k.value for k, v in ALERT_KINDS.items()}
    states = {v: k.value for k, v in ALERT_STATES.items()}
    async for event in stub.WatchEvents(lan_pb2.WatchEventsRequest(), metadata=auth):
        if event.HasField("alert"):
            a = event.alert
            where = f"{a.device_id} (room {a.room_id})"
            _say(f"ALERT {states[a.state]}: {kinds[a.kind]} on {where}: {a.message}")


async def _story(
    stub: Any,
    auth: Any,
    sim: Any,
    gateway: Any,
    args: argparse.Namespace,
) -> None:
    from bellhop.common.v1 import common_pb2
    from bellhop.lan.v1 import lan_pb2
    from bellhop_devices.sim import Faults
    from google.protobuf import struct_pb2

    total = len(sim.devices)
    with contextlib.suppress(TimeoutError):  # go on with the devices that made it
        await sim.wait_online(60)
    seen = gateway.hotel.online
    _say(f"{sim.online()}/{total} simulated devices connected; the gateway sees {seen} online")
    await asyncio.sleep(args.interval * 1.5)

    thermostat = next(d for d in sim.devices if d.endswith("thermostat"))
    params = struct_pb2.Struct()
    params.update({"setpoint": 22.5})
    request = lan_pb2.SendCommandRequest(
        device_id=thermostat, name="set_setpoint", params=params, command_id="demo-setpoint-1"
    )
    began = time.perf_counter()
    reply = await stub.SendCommand(request, metadata=auth, timeout=10)
    took = (time.perf_counter() - began) * 1000
    status = common_pb2.CommandStatus.Name(reply.result.status)
    _say(f"command set_setpoint(22.5) -> {thermostat}: {status} in {took:.1f} ms (gRPC, MQTT, ack)")
    again = await stub.SendCommand(request, metadata=auth, timeout=10)
    outcome = "same result, not executed twice" if again.result == reply.result else "DIFFERENT"
    _say(f"retried the same command id: {outcome}")

    quiet = next(d for d in sim.devices if d.endswith("door_sensor"))
    sim.devices[quiet].faults = Faults(silent=True)
    _say(f"{quiet} goes quiet (no Will, no messages): the gateway should notice from the silence")
    alert = None
    while alert is None:
        await asyncio.sleep(0.5)
        alerts = await stub.ListAlerts(
            lan_pb2.ListAlertsRequest(states=[common_pb2.ALERT_STATE_RAISED]), metadata=auth
        )
        alert = next((a for a in alerts.alerts if a.device_id == quiet), None)
    acked = await stub.AcknowledgeAlert(
        lan_pb2.AcknowledgeAlertRequest(alert_id=alert.alert_id, note="maintenance on the way"),
        metadata=auth,
    )
    _say(f"front desk acknowledged alert {acked.alert.alert_id[:8]} with note {acked.alert.note!r}")
    sim.devices[quiet].faults = Faults()

    while True:
        status_reply = await stub.GetGatewayStatus(
            lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=10
        )
        rejected = sum(status_reply.rejected.values())
        _say(
            f"status: {status_reply.devices_online}/{status_reply.devices_total} online, "
            f"{status_reply.accepted} messages stored, {rejected} rejected, "
            f"broker {'up' if status_reply.broker_connected else 'DOWN'}"
        )
        await asyncio.sleep(max(args.interval * 2.5, 5))
