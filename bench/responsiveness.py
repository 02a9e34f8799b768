"""Responsiveness under load: event-loop stalls while draining, LAN calls during a burst.

Drain: a gateway in this process with no broker (as the congestion tests run
it) is handed 120,000 QoS 0 telemetry messages through its link entry point in
one go, faster than the writer commits, so that tens of thousands are held
back; then, while they are drained, a probe sleeps 1 ms at a time and records
how long each sleep really took. Floor: the same probe on the same gateway,
idle, for as long as the drain took. The heap is frozen after start-up, as
`bellhop edge run` does.

Burst: the gateway runs as its own process (`bellhop edge run`, uvloop) on a
real Mosquitto; one `mosquitto_pub -l` (a C publisher) sends a burst of QoS 1
telemetry while this process, the staff app, calls GetGatewayStatus every
5 ms until the gateway reports the whole burst taken. Floor: the same calls,
at the same pace, to the same gateway while it is idle, just before each
burst.

Prints one JSON object as the last line: drain_max_stall_ms against
idle_max_stall_ms (drain_ratio), burst_max_call_ms against idle_max_call_ms
(burst_ratio), with p99s and how much load each part carried.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The C publisher is started while gRPC's threads run; its fork handlers
# would only log that they skip themselves (the child execs at once).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import aiomqtt
import grpc
from _load import ROOT, broker, percentile, report
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_edge.auth import LocalTokens, Role
from bellhop_edge.config import load_config
from bellhop_edge.gateway import Gateway
from bellhop_edge.localbroker import free_port, stop_process, wait_for_port

HOTEL = "bench-responsive"
DEVICE = "r102-env"
PROBE_S = 0.001
CALL_PACE_S = 0.005


# -- drain ---------------------------------------------------------------------------
async def probe_loop(until: Callable[[], bool]) -> list[float]:
    """How long each 1 ms sleep took, in ms, until `until()` holds."""
    took: list[float] = []
    while not until():
        started = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        took.append((time.perf_counter() - started) * 1000)
    return took


async def drain(workdir: Path, total: int) -> dict[str, object]:
    config = load_config(
        overrides={
            "hotel_id": HOTEL,
            "data_dir": str(workdir),
            "log_level": "WARNING",
            # No broker: messages are handed over the way the link does it.
            "mqtt": {"port": 1, "reconnect_min_s": 5},
            "api": {"listen": "127.0.0.1:0"},
            "store": {"max_pending_ops": 100_000},
            "rooms": [{"room_id": "101"}],
            "devices": [{"device_id": "env", "room_id": "101", "kind": "environment_sensor"}],
        }
    )
    topic = f"hotel/{HOTEL}/device/env/telemetry"
    # Its link keeps failing to reach port 1: not what is measured.
    logging.getLogger("bellhop_edge.mqtt").setLevel(logging.CRITICAL)
    base = int(time.time() * 1000) - total
    async with Gateway(config) as gateway:
        gc.collect()
        gc.freeze()  # as `bellhop edge run` does after start-up
        try:
            for seq in range(1, total + 1):
                gateway._on_message(  # the link's entry point
                    aiomqtt.Message(
                        topic,
                        b'{"v":1,"ts":%d,"seq":%d,"metrics":{"humidity":40}}' % (base + seq, seq),
                        0,
                        False,
                        seq,
                        None,
                    )
                )
            held = gateway.delivery.holding
            if held < 50_000:
                raise RuntimeError(f"only {held} messages held: the writer was not congested")
            hotel = gateway.hotel
            began = time.perf_counter()
            draining = await probe_loop(lambda: hotel.accepted >= total)
            drained_s = time.perf_counter() - began
            await gateway.writer.flush()
            stored = len(gateway.store.query_telemetry("env", "humidity", 0, 2**62, 2 * total))
            # The floor: the same probe on the same gateway, now idle, as long.
            idle_until = time.perf_counter() + drained_s
            idle = await probe_loop(lambda: time.perf_counter() >= idle_until)
        finally:
            gc.unfreeze()
    return {
        "drain_messages": total,
        "drain_held": held,
        "drain_s": round(drained_s, 2),
        "drain_lost": total - stored,
        "drain_max_stall_ms": round(max(draining), 1),
        "drain_p99_stall_ms": round(percentile(draining, 99), 2),
        "idle_max_stall_ms": round(max(idle), 1),
        "idle_p99_stall_ms": round(percentile(idle, 99), 2),
        "drain_ratio": round(max(draining) / max(idle), 2),
    }


# -- burst ---------------------------------------------------------------------------
def _lines(first_ts: int, count: int) -> bytes:
    return b"".join(
        b'{"v":1,"ts":%d,"seq":%d,"metrics":{"temperature":21.5,"humidity":40}}\n'
        % (first_ts + i, i + 1)
        for i in range(count)
    )


def _taken(reply: lan_pb2.GetGatewayStatusResponse, *, target: int) -> bool:
    return reply.accepted >= target


async def paced_calls(
    call: Callable[[], Awaitable[lan_pb2.GetGatewayStatusResponse]],
    until: Callable[[lan_pb2.GetGatewayStatusResponse], bool],
    *,
    max_calls: int | None = None,
) -> list[float]:
    """Latencies (ms) of `call`, one every 5 ms, until a reply satisfies `until`."""
    took: list[float] = []
    while max_calls is None or len(took) < max_calls:
        started = time.perf_counter()
        reply = await call()
        took.append((time.perf_counter() - started) * 1000)
        if until(reply):
            break
        await asyncio.sleep(CALL_PACE_S)
    return took


async def burst(workdir: Path, size: int, rounds: int, idle_calls: int) -> dict[str, object]:
    with broker() as mq:
        gw = mq.add_gateway(HOTEL)
        dev = mq.add_device(HOTEL, DEVICE)
        mq.reload()
        api_port = free_port()
        config = workdir / "edge.toml"
        config.write_text(
            f'hotel_id = "{HOTEL}"\ndata_dir = "{workdir}/edge"\nlog_level = "WARNING"\n'
            f'[mqtt]\nhost = "{mq.host}"\nport = {mq.port}\n'
            f'username = "{gw.username}"\npassword = "{gw.password}"\n'
            f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
            '[[rooms]]\nroom_id = "102"\nfloor = 1\n'
            f'[[devices]]\ndevice_id = "{DEVICE}"\nroom_id = "102"\nkind = "environment_sensor"\n'
        )
        token = LocalTokens(workdir / "edge" / "staff-tokens.json").create("bench", Role.STAFF)
        auth = (("authorization", f"Bearer {token}"),)
        log = (workdir / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            [str(ROOT / ".venv/bin/bellhop"), "edge", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_for_port("127.0.0.1", api_port, timeout=30)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
                stub = lan_pb2_grpc.LanServiceStub(channel)

                def status() -> Awaitable[lan_pb2.GetGatewayStatusResponse]:
                    request = lan_pb2.GetGatewayStatusRequest()
                    return stub.GetGatewayStatus(request, metadata=auth, timeout=10)

                async with asyncio.timeout(30):  # subscribed: the burst is not lost
                    while not (await status()).broker_connected:
                        await asyncio.sleep(0.05)
                # Device times in the past, one range per round (no replays).
                first_ts = int(time.time() * 1000) - rounds * size - 1000
                idle: list[float] = []
                during: list[float] = []
                rates = []
                for r in range(rounds):
                    idle += await paced_calls(status, lambda _: False, max_calls=idle_calls)
                    before = (await status()).accepted
                    target = before + size
                    publisher = await asyncio.create_subprocess_exec(
                        "mosquitto_pub",
                        *("-h", mq.host, "-p", str(mq.port), "-q", "1", "-l"),
                        *("-u", dev.username, "-P", dev.password, "-i", f"burst-{r}"),
                        *("-t", f"hotel/{HOTEL}/device/{DEVICE}/telemetry"),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                    )
                    assert publisher.stdin is not None
                    began = time.perf_counter()
                    publisher.stdin.write(_lines(first_ts + r * size, size))
                    await publisher.stdin.drain()
                    publisher.stdin.close()
                    async with asyncio.timeout(300):
                        during += await paced_calls(
                            status, functools.partial(_taken, target=target)
                        )
                        rates.append(size / (time.perf_counter() - began))
                        if await publisher.wait() != 0:
                            raise RuntimeError("mosquitto_pub failed")
        finally:
            stop_process(gateway)
            log.close()
    return {
        "burst_messages": size,
        "bursts": rounds,
        "burst_msgs_per_s": round(min(rates)),
        "burst_calls": len(during),
        "burst_max_call_ms": round(max(during), 1),
        "burst_p99_call_ms": round(percentile(during, 99), 2),
        "burst_p50_call_ms": round(percentile(during, 50), 2),
        "idle_max_call_ms": round(max(idle), 1),
        "idle_p99_call_ms": round(percentile(idle, 99), 2),
        "idle_p50_call_ms": round(percentile(idle, 50), 2),
        "burst_ratio": round(max(during) / max(idle), 2),
    }


async def main(args: argparse.Namespace) -> None:
    drained = 120_000
    size, rounds, idle_calls = (30_000, 1, 300) if args.quick else (100_000, 3, 1000)
    with tempfile.TemporaryDirectory(prefix="bellhop-responsive-") as tmp:
        figures = {"loop": args.loop}
        figures |= await drain(Path(tmp) / "drain", drained)
        figures |= await burst(Path(tmp), size, rounds, idle_calls)
    report(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one smaller burst (< 60 s)")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the drained gateway (production runs uvloop); the burst's is uvloop",
    )
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(arguments))
    else:
        asyncio.run(main(arguments))
