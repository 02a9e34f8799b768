"""A whole simulated hotel for the benchmarks: broker, gateway process, device process."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _load import ROOT, broker
from bellhop_devices.sim import floor_of, layout
from bellhop_edge.auth import LocalTokens, Role
from bellhop_edge.localbroker import free_port, stop_process, wait_for_port


@dataclass
class RunningHotel:
    hotel_id: str
    gateway: subprocess.Popen[bytes]
    devices: subprocess.Popen[bytes]
    api_port: int
    token: str
    device_ids: list[str]
    database: Path


def rooms_for(devices: int) -> int:
    """Rooms whose layout holds at least `devices` devices."""
    rooms = 1
    while len(layout(rooms)) < devices:
        rooms += 1
    return rooms


@contextmanager
def hotel(
    workdir: Path, *, devices: int, interval_s: float, hotel_id: str
) -> Iterator[RunningHotel]:
    specs = layout(rooms_for(devices))[:devices]
    with broker() as mq:
        gw = mq.add_gateway(hotel_id)
        creds = mq.add_devices(hotel_id, [s.device_id for s in specs])
        mq.reload()
        api_port = free_port()
        rooms = sorted({s.room_id for s in specs if s.room_id})
        lines = [
            f'hotel_id = "{hotel_id}"',
            f'data_dir = "{workdir / "edge"}"',
            'log_level = "WARNING"',
            "[mqtt]",
            f'host = "{mq.host}"',
            f"port = {mq.port}",
            f'username = "{gw.username}"',
            f'password = "{gw.password}"',
            "[api]",
            f'listen = "127.0.0.1:{api_port}"',
            "[liveness]",
            f"heartbeat_timeout_s = {max(3 * interval_s, 30)}",
        ]
        for room in rooms:
            lines += ["[[rooms]]", f'room_id = "{room}"', f"floor = {floor_of(room)}"]
        for s in specs:
            lines += [
                "[[devices]]",
                f'device_id = "{s.device_id}"',
                f'room_id = "{s.room_id}"',
                f'kind = "{s.kind.value}"',
            ]
        config = workdir / "edge.toml"
        config.write_text("\n".join(lines) + "\n")
        token = LocalTokens(workdir / "edge" / "staff-tokens.json").create("bench", Role.STAFF)
        provisioning = workdir / "devices.json"
        provisioning.write_text(
            json.dumps(
                {
                    "hotel_id": hotel_id,
                    "broker": {"host": mq.host, "port": mq.port, "tls": False},
                    "devices": [
                        {
                            "device_id": s.device_id,
                            "room_id": s.room_id,
                            "kind": s.kind.value,
                            "username": creds[s.device_id].username,
                            "password": creds[s.device_id].password,
                        }
                        for s in specs
                    ],
                }
            )
        )
        os.chmod(provisioning, 0o600)
        bellhop = str(ROOT / ".venv/bin/bellhop")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = (workdir / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            [bellhop, "edge", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        sim_log = (workdir / "sim.log").open("wb")
        sim: subprocess.Popen[bytes] | None = None
        try:
            # Inside the try: a gateway that does not come up is still stopped.
            wait_for_port("127.0.0.1", api_port, timeout=60)
            sim = subprocess.Popen(
                [
                    bellhop,
                    "sim",
                    "--provisioning",
                    str(provisioning),
                    "--interval",
                    str(interval_s),
                    "--summary-every",
                    "3600",
                ],
                stdout=sim_log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            yield RunningHotel(
                hotel_id,
                gateway,
                sim,
                api_port,
                token,
                [s.device_id for s in specs],
                workdir / "edge" / "edge.db",
            )
        finally:
            stop_process(sim)
            stop_process(gateway)
            log.close()
            sim_log.close()


def wait_online(stub, auth, count: int, timeout: float = 120) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the gateway sees `count` devices online (blocking gRPC stub)."""
    from bellhop.lan.v1 import lan_pb2

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        status = stub.GetGatewayStatus(lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=5)
        if status.devices_online >= count:
            return time.monotonic() - began
        time.sleep(0.5)
    raise TimeoutError(f"only {status.devices_online} of {count} devices came online")
