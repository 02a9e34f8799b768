"""P1: MQTT telemetry ingested by the gateway into SQLite, against a bare aiomqtt floor.

Load: one `mosquitto_pub -l` (a C publisher) per device, all at once, through a
real Mosquitto with the gateway's generated credentials and ACL, so the
subscriber is the bottleneck. The same load is first taken by a bare aiomqtt
subscriber (the floor), then by the gateway (decode, state, rules, history,
outbox, QoS handling, single SQLite writer). Rates are counted from the first
message to the last one committed. Prints one JSON object as the last line:
msgs_per_s, floor_msgs_per_s, ratio, lost.

The gateway reads the broker socket in chunks (bellhop_edge.mqtt._compat), which the
bare subscriber does not; a second floor with the same read buffer, keys
chunked_floor_msgs_per_s and ratio_to_chunked_floor, shows what the gateway's
own work costs apart from how it reads.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aiomqtt
from _load import broker, publish_load, report
from bellhop_edge.config import load_config
from bellhop_edge.gateway import Gateway
from bellhop_edge.localbroker import Credentials, MosquittoBroker
from bellhop_edge.mqtt._compat import read_in_chunks
from bellhop_edge.store import EdgeStore

HOTEL = "bench-ingest"


async def _waves(
    mq: MosquittoBroker,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    received: Callable[[], int],
    qos: int,
) -> tuple[int, float]:
    """Publish `waves` waves of load, each once the previous one is taken.

    One wave fits the broker's per-client queue (max_queued_messages), so
    nothing is dropped by the broker however slow the subscriber; the rate is
    counted from the first message of the first wave to the last of the last.
    """
    loop = asyncio.get_running_loop()
    per_wave = len(devices) * per_device
    first: float | None = None
    for wave in range(waves):
        load = loop.run_in_executor(
            None,
            functools.partial(publish_load, mq, HOTEL, devices, per_device, wave=wave, qos=qos),
        )
        deadline = time.monotonic() + 120
        while received() < per_wave * (wave + 1) and time.monotonic() < deadline:
            if first is None and received() > 0:
                first = time.perf_counter()
            await asyncio.sleep(0.0005 if first is None else 0.005)
        await load
    return received(), first or time.perf_counter()


async def floor(
    mq: MosquittoBroker,
    gateway_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    *,
    chunked: bool = False,
    qos: int = 0,
) -> float:
    """A bare aiomqtt subscriber that only counts what it receives.

    `chunked`: with the gateway's socket read buffer (bellhop_edge.mqtt._compat), so
    that the gateway's own work can be told apart from how it reads.
    """
    got = 0
    client = aiomqtt.Client(
        mq.host,
        mq.port,
        username=gateway_creds.username,
        password=gateway_creds.password,
        identifier="bench-floor",
    )
    if chunked:
        read_in_chunks(client)
    async with client:
        await client.subscribe(f"hotel/{HOTEL}/device/+/telemetry", qos=1)

        async def count() -> None:
            nonlocal got
            async for _ in client.messages:
                got += 1

        counter = asyncio.create_task(count())
        received, first = await _waves(mq, devices, per_device, waves, lambda: got, qos)
        last = time.perf_counter()
        counter.cancel()
    await asyncio.gather(counter, return_exceptions=True)
    return received / (last - first) if received > 1 else 0.0


async def gateway_run(
    mq: MosquittoBroker,
    gateway_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    workdir: Path,
    *,
    qos: int = 0,
) -> tuple[float, int]:
    """The gateway taking the same load: decode, state, rules, history, outbox."""
    total = len(devices) * per_device * waves
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
            "liveness": {"heartbeat_timeout_s": 3600},
            "rooms": [{"room_id": "100", "floor": 1}],
            "devices": [
                {"device_id": d, "room_id": "100", "kind": "environment_sensor"} for d in devices
            ],
        }
    )
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        hotel = gateway.hotel
        accepted, first = await _waves(mq, devices, per_device, waves, lambda: hotel.accepted, qos)
        await gateway.writer.flush()
        last = time.perf_counter()
    with EdgeStore.open(workdir / "edge.db") as store:
        stored = sum(
            len(store.query_telemetry(device, "temperature", 0, 2**62, total)) for device in devices
        )
    rate = accepted / (last - first) if accepted > 1 else 0.0
    return rate, total - stored


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller load, same shape (< 60 s)")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of both the floor and the gateway (production runs uvloop)",
    )
    parser.add_argument(
        "--broker-persistence",
        action="store_true",
        help="the broker saves its queue every second, as the generated config does",
    )
    parser.add_argument(
        "--qos", type=int, choices=[0, 1], default=0, help="QoS of the load (P1 is QoS 0)"
    )
    args = parser.parse_args()
    # One wave is 100,000 messages; the full run sustains 5 of them per measurement.
    n_devices, per_device = 20, 5_000
    waves, rounds = (1, 1) if args.quick else (5, 2)
    with broker(persistence=args.broker_persistence) as mq:
        gateway_creds = mq.add_gateway(HOTEL)
        devices = mq.add_devices(HOTEL, [f"env-{i:03d}" for i in range(n_devices)])
        mq.reload()
        floors, chunked, rates, lost = [], [], [], 0
        for _ in range(rounds):
            floors.append(await floor(mq, gateway_creds, devices, per_device, waves, qos=args.qos))
            chunked.append(
                await floor(
                    mq, gateway_creds, devices, per_device, waves, chunked=True, qos=args.qos
                )
            )
            with tempfile.TemporaryDirectory(prefix="bellhop-ingest-") as tmp:
                rate, missing = await gateway_run(
                    mq, gateway_creds, devices, per_device, waves, Path(tmp), qos=args.qos
                )
            rates.append(rate)
            lost += missing
    best_floor, best_chunked, best = max(floors), max(chunked), max(rates)
    report(
        {
            "messages": n_devices * per_device * waves,
            "rounds": rounds,
            "loop": args.loop,
            "qos": args.qos,
            "broker_persistence": args.broker_persistence,
            "msgs_per_s": round(best),
            "floor_msgs_per_s": round(best_floor),
            "ratio": round(best / best_floor, 3) if best_floor else None,
            "chunked_floor_msgs_per_s": round(best_chunked),
            "ratio_to_chunked_floor": round(best / best_chunked, 3) if best_chunked else None,
            "lost": lost,
        }
    )


if __name__ == "__main__":
    use_uvloop = "--loop=asyncio" not in sys.argv and "asyncio" not in sys.argv
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())
