"""P1: MQTT telemetry ingested by the gateway into SQLite, against a bare aiomqtt floor.

Load: one `mosquitto_pub -l` (a C publisher) per device, all at once, through a
real Mosquitto with the gateway's generated credentials and ACL, so the
subscriber is the bottleneck. The same load is first taken by a bare aiomqtt
subscriber (the floor), then by the gateway (decode, state, rules, history,
outbox, QoS handling, single SQLite writer). Rates are counted from the first
message to the last one committed. Prints one JSON object as the last line:
msgs_per_s, floor_msgs_per_s, ratio, lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aiomqtt
from _load import broker, publish_load, report
from bellhop_edge.app import Gateway
from bellhop_edge.config import load_config
from bellhop_edge.localbroker import Credentials, MosquittoBroker
from bellhop_edge.store import EdgeStore

HOTEL = "bench-ingest"


async def floor(
    mq: MosquittoBroker,
    gateway_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
) -> float:
    total = len(devices) * per_device
    async with aiomqtt.Client(
        mq.host,
        mq.port,
        username=gateway_creds.username,
        password=gateway_creds.password,
        identifier="bench-floor",
    ) as client:
        await client.subscribe(f"hotel/{HOTEL}/device/+/telemetry", qos=1)
        load = asyncio.get_running_loop().run_in_executor(
            None, publish_load, mq, HOTEL, devices, per_device
        )
        got, first = 0, 0.0
        try:
            async with asyncio.timeout(120):
                async for _ in client.messages:
                    if got == 0:
                        first = time.perf_counter()
                    got += 1
                    if got == total:
                        break
        except TimeoutError:
            pass
        last = time.perf_counter()
        await load
    return got / (last - first) if got > 1 else 0.0


async def gateway_run(
    mq: MosquittoBroker,
    gateway_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
    workdir: Path,
) -> tuple[float, int]:
    total = len(devices) * per_device
    config = load_config(
        overrides={
            "hotel_id": HOTEL,
            "data_dir": str(workdir),
            "log_level": "WARNING",
            # A fresh client id per run: a persistent session left by an
            # earlier run would otherwise have queued the floor's load.
            "mqtt": {
                "host": mq.host,
                "port": mq.port,
                "username": gateway_creds.username,
                "password": gateway_creds.password,
                "client_id": f"bench-gw-{time.time_ns()}",
            },
            "api": {"listen": "127.0.0.1:0"},
            "rooms": [{"room_id": "100", "floor": 1}],
            "devices": [
                {"device_id": d, "room_id": "100", "kind": "environment_sensor"} for d in devices
            ],
        }
    )
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        load = asyncio.get_running_loop().run_in_executor(
            None, publish_load, mq, HOTEL, devices, per_device
        )
        hotel = gateway.hotel
        first = None
        deadline = time.monotonic() + 180
        while hotel.accepted < total and time.monotonic() < deadline:
            if first is None and hotel.accepted > 0:
                first = time.perf_counter()
            await asyncio.sleep(0.001 if first is None else 0.01)
        await gateway.writer.flush()
        last = time.perf_counter()
        await load
        accepted = hotel.accepted
    with EdgeStore.open(workdir / "edge.db") as store:
        stored = sum(
            len(store.query_telemetry(device, "temperature", 0, 2**62, per_device * 2))
            for device in devices
        )
    rate = accepted / (last - (first or last)) if accepted > 1 else 0.0
    return rate, total - stored


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller load, same shape (< 60 s)")
    args = parser.parse_args()
    n_devices, per_device = (20, 5_000) if args.quick else (40, 12_500)
    rounds = 1 if args.quick else 2
    with broker() as mq:
        gateway_creds = mq.add_gateway(HOTEL)
        devices = mq.add_devices(HOTEL, [f"env-{i:03d}" for i in range(n_devices)])
        mq.reload()
        floors, rates, lost = [], [], 0
        for _ in range(rounds):
            floors.append(await floor(mq, gateway_creds, devices, per_device))
            with tempfile.TemporaryDirectory(prefix="bellhop-ingest-") as tmp:
                rate, missing = await gateway_run(mq, gateway_creds, devices, per_device, Path(tmp))
            rates.append(rate)
            lost += missing
    best_floor, best = max(floors), max(rates)
    report(
        {
            "messages": n_devices * per_device,
            "rounds": rounds,
            "msgs_per_s": round(best),
            "floor_msgs_per_s": round(best_floor),
            "ratio": round(best / best_floor, 3) if best_floor else None,
            "lost": lost,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
