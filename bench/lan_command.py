"""P2: LAN command round trip: gRPC -> gateway -> MQTT -> device -> ack -> gRPC reply.

The gateway (`bellhop edge run`) and the simulated device each run in their
own process, as on site; this process is the staff app, sending commands one
at a time. The floor, measured in the same run on the same broker: a bare
grpc.aio unary call plus a bare aiomqtt QoS 1 round trip (publish to a
device, the device publishes its answer back). Prints one JSON object as the
last line: p50_ms, p99_ms, floor_p50_ms, ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aiomqtt
import grpc
from _load import ROOT, broker, percentile, report
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_edge.auth import LocalTokens, Role
from google.protobuf import struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.support.mosquitto import free_port, wait_for_port

HOTEL = "bench-lan"
FLOOR_HOTEL = "bench-lan-floor"
DEVICE = "r101-light"


def run_device(host: str, port: int, username: str, password: str) -> None:
    from bellhop_devices.messages import DeviceKind
    from bellhop_devices.sim import Broker, SimulatedDevice

    async def serve() -> None:
        device = SimulatedDevice(
            hotel_id=HOTEL,
            device_id=DEVICE,
            kind=DeviceKind.LIGHT,
            broker=Broker(host, port),
            room_id="101",
            username=username,
            password=password,
            interval_s=3600,
        )
        async with device:
            await asyncio.Event().wait()

    asyncio.run(serve())


async def grpc_floor(n: int) -> list[float]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    samples = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(n):
            began = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest())
            samples.append((time.perf_counter() - began) * 1000)
    await server.stop(None)
    return samples


async def mqtt_floor(mq, gw, dev, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    """A bare QoS 1 round trip: gateway publishes, device answers, gateway receives.

    In a hotel of its own: the broker gives each client its username as id,
    so the floor's clients must not share an account with the running gateway.
    """
    cmd = f"hotel/{FLOOR_HOTEL}/device/floor-dev/cmd"
    ack = f"hotel/{FLOOR_HOTEL}/device/floor-dev/ack"
    samples = []
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with (
        aiomqtt.Client(
            mq.host,
            mq.port,
            username=gw.username,
            password=gw.password,
            identifier="floor-gw",
            socket_options=nodelay,
            timeout=5,
        ) as g,
        aiomqtt.Client(
            mq.host,
            mq.port,
            username=dev.username,
            password=dev.password,
            identifier="floor-dev",
            socket_options=nodelay,
            timeout=5,
        ) as d,
    ):
        await d.subscribe(cmd, qos=1)
        await g.subscribe(ack, qos=1)

        async def echo() -> None:
            with contextlib.suppress(aiomqtt.MqttError):
                async for message in d.messages:
                    await d.publish(ack, message.payload, qos=1)

        echoer = asyncio.create_task(echo())
        replies = g.messages
        for i in range(n):
            began = time.perf_counter()
            await g.publish(cmd, f'{{"id":"{i}"}}'.encode(), qos=1)
            async with asyncio.timeout(5):
                await anext(replies)
            samples.append((time.perf_counter() - began) * 1000)
    # The clients are closed, which ends the echo's iteration; one caught
    # publishing would wait for a PUBACK that never comes, so it is cancelled
    # too. Cancelled before the clients close, Python 3.11's wait_for could
    # swallow the cancellation and leave it waiting for a message for ever.
    echoer.cancel()
    await asyncio.wait({echoer}, timeout=10)
    return samples


async def commands(port: int, token: str, n: int) -> list[float]:
    samples = []
    auth = (("authorization", f"Bearer {token}"),)
    params = struct_pb2.Struct()
    params.update({"on": True})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = lan_pb2_grpc.LanServiceStub(channel)
        for i in range(n + 200):
            params["on"] = bool(i % 2)
            began = time.perf_counter()
            reply = await stub.SendCommand(
                lan_pb2.SendCommandRequest(device_id=DEVICE, name="set_light", params=params),
                metadata=auth,
                timeout=5,
            )
            if i >= 200:  # warm-up
                samples.append((time.perf_counter() - began) * 1000)
            if reply.result.status != common_pb2.COMMAND_STATUS_SUCCEEDED:
                raise RuntimeError(f"command failed: {reply.result}")
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands, same shape (< 60 s)")
    args = parser.parse_args()
    n = 1_000 if args.quick else 5_000
    with broker() as mq, tempfile.TemporaryDirectory(prefix="bellhop-lan-") as tmp:
        gw = mq.add_gateway(HOTEL)
        creds = mq.add_devices(HOTEL, [DEVICE])
        floor_gw = mq.add_gateway(FLOOR_HOTEL)
        floor_dev = mq.add_device(FLOOR_HOTEL, "floor-dev")
        mq.reload()
        api_port = free_port()
        config = Path(tmp) / "edge.toml"
        config.write_text(
            f'hotel_id = "{HOTEL}"\ndata_dir = "{tmp}/edge"\nlog_level = "WARNING"\n'
            f'[mqtt]\nhost = "{mq.host}"\nport = {mq.port}\nusername = "{gw.username}"\npassword = "{gw.password}"\n'
            f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
            '[[rooms]]\nroom_id = "101"\nfloor = 1\n'
            f'[[devices]]\ndevice_id = "{DEVICE}"\nroom_id = "101"\nkind = "light"\n'
        )
        token = LocalTokens(Path(tmp) / "edge" / "staff-tokens.json").create("bench", Role.STAFF)
        gateway = subprocess.Popen(
            [str(ROOT / ".venv/bin/bellhop"), "edge", "run", "--config", str(config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        device = multiprocessing.get_context("spawn").Process(
            target=run_device,
            args=(mq.host, mq.port, creds[DEVICE].username, creds[DEVICE].password),
        )
        device.start()
        try:
            wait_for_port("127.0.0.1", api_port, timeout=30)
            await asyncio.sleep(1.5)
            samples = await commands(api_port, token, n)
            grpc_samples = await grpc_floor(n)
            mqtt_samples = await mqtt_floor(mq, floor_gw, floor_dev, n)
        finally:
            device.terminate()
            gateway.terminate()
            gateway.wait(timeout=30)
            device.join(timeout=10)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    floor_p50 = percentile(grpc_samples, 50) + percentile(mqtt_samples, 50)
    report(
        {
            "commands": n,
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "grpc_floor_p50_ms": round(percentile(grpc_samples, 50), 3),
            "mqtt_floor_p50_ms": round(percentile(mqtt_samples, 50), 3),
            "floor_p50_ms": round(floor_p50, 3),
            "ratio": round(p50 / floor_p50, 3),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
