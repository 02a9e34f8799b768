"""P1: MQTT telemetry ingested by the gateway into SQLite, against a bare aiomqtt floor.

Load: one `mosquitto_pub -l` (a C publisher) per device, all at once, through a
real Mosquitto with the gateway's generated credentials and ACL, so the
subscriber is the bottleneck. The same load is first taken by a bare aiomqtt
subscriber (the floor), then by the gateway (decode, state, rules, history,
outbox, QoS handling, single SQLite writer). Rates are counted from the first
message to the last one committed. Prints one JSON object as the last line:
msgs_per_s, floor_msgs_per_s, ratio, lost, queued, stalled.

The gateway reads the broker socket in chunks (bellhop_edge.mqtt._compat), which the
bare subscriber does not; a second floor with the same read buffer, keys
chunked_floor_msgs_per_s and ratio_to_chunked_floor, shows what the gateway's
own work costs apart from how it reads.

`lost` counts only real loss: messages the broker acknowledged to a publisher
(its PUBACKs, counted from each publisher's `-d` output at QoS 1) that are
neither in the gateway's SQLite after the run nor still queued at the broker
for the gateway's persistent session. Three things used to make it count
messages that were not lost, on a loaded machine:

- A wave was published after a fixed 120 s even if the subscriber had not
  taken the previous one. A wave fills the broker's per-client queue
  (`max_queued_messages 100000`), so the broker then dropped the overflow,
  as it is configured to. A wave is now published only once the previous one
  is taken; a subscriber that takes nothing for `STALL_S` is reported
  (`stalled`) and no further wave is published for it.
- The gateway was stopped at that same deadline with messages still queued
  for it at the broker, which a real gateway gets on its next start. They
  are now waited for, and whatever is still queued when the gateway stops
  (only after a stall) is taken off the broker and reported as `queued`.
- The floor used the gateway's account; the broker takes each client's
  username as its client id, so the floor shared, and with its clean
  session wiped, the gateway's persistent session. It has an account of its
  own now.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aiomqtt
from _load import broker, publish_load, report
from bellhop_edge.config import load_config
from bellhop_edge.gateway import Gateway
from bellhop_edge.influx import InfluxSink
from bellhop_edge.localbroker import Credentials, MosquittoBroker
from bellhop_edge.mqtt._compat import read_in_chunks
from bellhop_edge.store import EdgeStore

HOTEL = "bench-ingest"
FLOOR_USER = "bench-floor"
# A subscriber that takes no message for this long is stuck, not slow: even on
# a heavily loaded machine a live one takes some every few seconds.
STALL_S = 120.0
# A device id nobody publishes as: its topic marks the end of a drained queue.
MARKER_DEVICE = "bench-drain-marker"

Key = tuple[str, int]  # (device, time): one telemetry message


@dataclass(frozen=True, slots=True)
class Waves:
    received: int  # what the subscriber took
    first: float  # perf_counter at its first message
    published: int  # what the broker acknowledged to the publishers
    stalled: bool  # it stopped taking messages; later waves were not published


def _stall_check(progress: Callable[[], int]) -> Callable[[], bool]:
    """A check that turns true once `progress()` has not moved for STALL_S."""
    count, moved = progress(), time.monotonic()

    def stalled() -> bool:
        nonlocal count, moved
        now = progress()
        if now != count:
            count, moved = now, time.monotonic()
            return False
        return time.monotonic() - moved > STALL_S

    return stalled


async def _waves(
    mq: MosquittoBroker,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    received: Callable[[], int],
    qos: int,
) -> Waves:
    """Publish `waves` waves of load, each once the previous one is taken.

    One wave fits the broker's per-client queue (max_queued_messages), so
    nothing is dropped by the broker however slow the subscriber, provided no
    wave is published before the previous one is taken: after a stall none is.
    Returns once the last wave is taken (or the subscriber stalled); the rate
    is counted from the first message of the first wave to the last of the last.
    """
    loop = asyncio.get_running_loop()
    first: float | None = None
    published = 0
    stalled = _stall_check(received)
    for wave in range(waves):
        load = loop.run_in_executor(
            None,
            functools.partial(publish_load, mq, HOTEL, devices, per_device, wave=wave, qos=qos),
        )
        # The wave's size is what the broker acknowledged, known once every publisher is done.
        while not (load.done() and received() >= published + load.result()):
            if first is None and received() > 0:
                first = time.perf_counter()
            if stalled():
                published += await load
                print(
                    f"the subscriber took no message for {STALL_S:.0f} s, at {received()} of"
                    f" {published}: no further wave is published for it",
                    file=sys.stderr,
                )
                return Waves(received(), first or time.perf_counter(), published, stalled=True)
            await asyncio.sleep(0.0005 if first is None else 0.005)
        published += load.result()
    return Waves(received(), first or time.perf_counter(), published, stalled=False)


async def still_queued(mq: MosquittoBroker, creds: Credentials) -> set[Key]:
    """Take what the broker still holds for the gateway's persistent session, and end it.

    The broker sends a session's queued messages in order, so a marker
    published into it after connecting comes after all of them. The session
    is then ended (a clean-session connection), so that the floor's load of
    the next round is not queued for a gateway that is not running.
    """
    marker = f"hotel/{HOTEL}/device/{MARKER_DEVICE}/telemetry"
    keys: set[Key] = set()
    taken = 0

    def client(*, clean_session: bool) -> aiomqtt.Client:
        return aiomqtt.Client(
            mq.host,
            mq.port,
            username=creds.username,
            password=creds.password,
            identifier=creds.username,
            clean_session=clean_session,
        )

    async with client(clean_session=False) as session:
        await session.subscribe(f"hotel/{HOTEL}/device/+/telemetry", qos=1)
        await session.publish(marker, b"{}", qos=1)

        async def drain() -> None:
            nonlocal taken
            async for message in session.messages:
                topic = message.topic.value
                if topic == marker:
                    return
                taken += 1
                assert isinstance(message.payload, bytes)
                keys.add((topic.split("/")[3], int(json.loads(message.payload)["ts"])))

        draining = asyncio.create_task(drain())
        stalled = _stall_check(lambda: taken)
        while not draining.done():
            if stalled():
                draining.cancel()
                print(f"the broker's queue did not drain: {taken} taken", file=sys.stderr)
            await asyncio.wait({draining}, timeout=0.05)
        await asyncio.gather(draining, return_exceptions=True)
    async with client(clean_session=True):
        pass
    return keys


async def floor(
    mq: MosquittoBroker,
    floor_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    *,
    chunked: bool = False,
    qos: int = 0,
) -> tuple[float, bool]:
    """A bare aiomqtt subscriber that only counts what it receives: (rate, stalled).

    `chunked`: with the gateway's socket read buffer (bellhop_edge.mqtt._compat), so
    that the gateway's own work can be told apart from how it reads.
    """
    got = 0
    client = aiomqtt.Client(
        mq.host,
        mq.port,
        username=floor_creds.username,
        password=floor_creds.password,
        identifier=floor_creds.username,
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
        taken = await _waves(mq, devices, per_device, waves, lambda: got, qos)
        last = time.perf_counter()
        counter.cancel()
    await asyncio.gather(counter, return_exceptions=True)
    rate = taken.received / (last - taken.first) if taken.received > 1 else 0.0
    return rate, taken.stalled


@dataclass(frozen=True, slots=True)
class GatewayRun:
    rate: float
    lost: int  # acknowledged by the broker, neither stored nor still queued for the gateway
    queued: int  # still queued for the gateway when it stopped (it would get them on restart)
    stalled: bool


async def gateway_run(
    mq: MosquittoBroker,
    gateway_creds: Credentials,
    devices: dict[str, Credentials],
    per_device: int,
    waves: int,
    workdir: Path,
    *,
    qos: int = 0,
    influx_down: bool = False,
) -> GatewayRun:
    """The gateway taking the same load: decode, state, rules, history, outbox."""
    total = len(devices) * per_device * waves
    extra: dict[str, object] = {}
    if influx_down:
        # The InfluxDB sink on, its server away: the writer keeps every point's lines.
        extra["influx"] = {
            "enabled": True,
            "url": f"http://127.0.0.1:{_closed_port()}",
            "token": "bench",
            "organisation": "bench",
        }
    config = load_config(
        overrides={
            **extra,
            "hotel_id": HOTEL,
            "data_dir": str(workdir),
            "log_level": "WARNING",
            # The broker takes the username as client id, so every run has the
            # same persistent session; `still_queued` empties and ends it after
            # each run, so that none of the floor's load is queued for it.
            "mqtt": {
                "host": mq.host,
                "port": mq.port,
                "username": gateway_creds.username,
                "password": gateway_creds.password,
            },
            "api": {"listen": "127.0.0.1:0"},
            "liveness": {"heartbeat_timeout_s": 3600},
            "rooms": [{"room_id": "100", "floor": 1}],
            "devices": [
                {"device_id": d, "room_id": "100", "kind": "environment_sensor"} for d in devices
            ],
        }
    )
    # The sink runs beside the gateway as `bellhop edge run` runs it (service.run).
    sink = InfluxSink.running(config) if influx_down else contextlib.nullcontext()
    async with Gateway(config) as gateway, sink:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        hotel = gateway.hotel
        taken = await _waves(mq, devices, per_device, waves, lambda: hotel.accepted, qos)
        await gateway.writer.flush()
        last = time.perf_counter()
    # Stopped cleanly: what it accepted is committed and acknowledged, the rest stays queued.
    queued = await still_queued(mq, gateway_creds)
    with EdgeStore.open(workdir / "edge.db") as store:
        stored = {
            (device, point.ts)
            for device in devices
            for point in store.query_telemetry(device, "temperature", 0, 2**62, total)
        }
    rate = taken.received / (last - taken.first) if taken.received > 1 else 0.0
    if influx_down:
        lines = _stored_lines(workdir / "edge.db")
        print(f"points kept as lines for the InfluxDB sink: {lines}", file=sys.stderr)
    return GatewayRun(
        rate=rate,
        lost=taken.published - len(stored | queued),
        queued=len(queued - stored),
        stalled=taken.stalled,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stored_lines(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        row = conn.execute("SELECT sum(last_seq - first_seq + 1) FROM influx_lines").fetchone()
        return int(row[0] or 0)
    finally:
        conn.close()


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
    parser.add_argument(
        "--influx-down",
        action="store_true",
        help="the gateway's InfluxDB sink on, its server away (not P1: the cost of its lines)",
    )
    args = parser.parse_args()
    # One wave is 100,000 messages; the full run sustains 5 of them per measurement.
    n_devices, per_device = 20, 5_000
    waves, rounds = (1, 1) if args.quick else (5, 2)
    with broker(persistence=args.broker_persistence) as mq:
        gateway_creds = mq.add_gateway(HOTEL)
        floor_creds = mq.add_gateway(HOTEL, username=FLOOR_USER)
        devices = mq.add_devices(HOTEL, [f"env-{i:03d}" for i in range(n_devices)])
        mq.reload()
        floors: list[float] = []
        chunked: list[float] = []
        runs: list[GatewayRun] = []
        stalled = 0
        for _ in range(rounds):
            for buffered, rates in ((False, floors), (True, chunked)):
                rate, stuck = await floor(
                    mq, floor_creds, devices, per_device, waves, chunked=buffered, qos=args.qos
                )
                rates.append(rate)
                stalled += stuck
            with tempfile.TemporaryDirectory(prefix="bellhop-ingest-") as tmp:
                run = await gateway_run(
                    mq,
                    gateway_creds,
                    devices,
                    per_device,
                    waves,
                    Path(tmp),
                    qos=args.qos,
                    influx_down=args.influx_down,
                )
            runs.append(run)
            stalled += run.stalled
    best_floor, best_chunked = max(floors), max(chunked)
    best = max(run.rate for run in runs)
    report(
        {
            "messages": n_devices * per_device * waves,
            "rounds": rounds,
            "loop": args.loop,
            "qos": args.qos,
            "broker_persistence": args.broker_persistence,
            **({"influx_down": True} if args.influx_down else {}),
            "msgs_per_s": round(best),
            "floor_msgs_per_s": round(best_floor),
            "ratio": round(best / best_floor, 3) if best_floor else None,
            "chunked_floor_msgs_per_s": round(best_chunked),
            "ratio_to_chunked_floor": round(best / best_chunked, 3) if best_chunked else None,
            "lost": sum(run.lost for run in runs),
            "queued": sum(run.queued for run in runs),
            "stalled": stalled,
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
