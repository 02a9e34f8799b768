"""The SDK's cost over raw calls on each path, and how long a switch to the cloud takes.

One hotel on real processes (tests/sdk/conftest.py's site: Mosquitto, `bellhop cloud run`
on SQLite, `bellhop edge run` enrolled and bridged to it, four simulated devices on their
own MQTT connections answering commands), one manager login whose access token serves
both paths. Against that same hotel, in one run, with turns of BLOCK calls rotating the
order every turn so that load from anything else on the machine falls on all alike:

- reads (a device by id): the SDK on the LAN (`BellhopClient(lan_target=…).device`),
  raw gRPC (the generated stub's GetDevice), the SDK on the cloud, raw HTTP (plain httpx
  GET /v1/hotels/{h}/devices/{d});
- commands (`set_light`, waited for): the same four ways (SendCommand; POST …/commands
  with mode wait), each with ids of its own.

`lan_overhead_ratio` / `cloud_overhead_ratio` (the headline): the worse of the read and
the command ratio, SDK p50 / raw p50 on that path; both ratios are printed too.

`switch_ms`: a client with both paths whose LAN target is a TCP proxy in front of the
gateway's LAN port (tests/support/link_proxy.py); the proxy is cut (open connections
closed, new ones refused: the port vanished), and the client reads in a loop; switch_ms
is the time from the cut to the first read served by the cloud, repeated SWITCHES times:
the worst is the headline (`switch_p50_ms` beside it). `switch_back_ms` (information):
from the proxy forwarding again to the first read served by the LAN (the background
prober's back-off decides it).

    .venv/bin/python bench/sdk_paths.py [--quick] [--profile]

`--quick`: 1,000 reads and 500 commands per way (< 60 s); without it, three times as
many. `--profile`: the SDK's calls under cProfile, its busiest functions on stderr
(the figures of a profiled run are not quoted). Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpc
import httpx
from _load import ROOT, percentile, report
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_sdk import BellhopClient, CommandStatus
from bellhop_sdk import Path as Served
from google.protobuf import duration_pb2, struct_pb2

sys.path.insert(0, str(ROOT))
from tests.sdk.conftest import LIGHT, THERMOSTAT, SdkSite, sdk_site_at
from tests.support.link_proxy import LinkProxy

TARGET_OVERHEAD: Final = 1.2
TARGET_SWITCH_MS: Final = 1500.0
BLOCK: Final = 50
WARM_UP: Final = 50
SWITCHES: Final = 5
COMMAND_TIMEOUT_S: Final = 5.0
WAIT_S: Final = 30.0

Call = Callable[[int], Awaitable[None]]


def ways(site: SdkSite, token: str, lan: BellhopClient, cloud: BellhopClient, stub: Any,
         http: httpx.AsyncClient) -> tuple[dict[str, Call], dict[str, Call]]:  # fmt: skip
    """The read and command of each way, by name."""
    hotel = site.hotel_id
    auth = (("authorization", f"Bearer {token}"),)
    headers = {"Authorization": f"Bearer {token}"}
    device_url = f"/v1/hotels/{hotel}/devices/{THERMOSTAT}"
    command_url = f"/v1/hotels/{hotel}/devices/{LIGHT}/commands"

    async def sdk_lan_read(_i: int) -> None:
        device = await lan.device(hotel, THERMOSTAT)
        assert device.freshness.path is Served.LAN

    async def raw_grpc_read(_i: int) -> None:
        answer = await stub.GetDevice(
            lan_pb2.GetDeviceRequest(device_id=THERMOSTAT), metadata=auth, timeout=10
        )
        assert answer.device.device_id == THERMOSTAT

    async def sdk_cloud_read(_i: int) -> None:
        device = await cloud.device(hotel, THERMOSTAT)
        assert device.freshness.path is Served.CLOUD

    async def raw_http_read(_i: int) -> None:
        response = await http.get(device_url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["device_id"] == THERMOSTAT

    def sdk_command(client: BellhopClient, prefix: str) -> Call:
        async def one(i: int) -> None:
            command = await client.send_command(
                hotel, LIGHT, "set_light", {"on": bool(i % 2)},
                command_id=f"{prefix}-{i}", timeout_s=COMMAND_TIMEOUT_S,
            )  # fmt: skip
            assert command.status is CommandStatus.SUCCEEDED

        return one

    async def raw_grpc_command(i: int) -> None:
        params = struct_pb2.Struct()
        params.update({"on": bool(i % 2)})
        timeout = duration_pb2.Duration()
        timeout.FromNanoseconds(int(COMMAND_TIMEOUT_S * 1e9))
        reply = await stub.SendCommand(
            lan_pb2.SendCommandRequest(
                device_id=LIGHT,
                name="set_light",
                params=params,
                command_id=f"bench-rg-{i}",
                timeout=timeout,
            ),
            metadata=auth,
            timeout=COMMAND_TIMEOUT_S + 5,
        )
        assert reply.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED, reply

    async def raw_http_command(i: int) -> None:
        body = {
            "name": "set_light",
            "params": {"on": bool(i % 2)},
            "command_id": f"bench-rh-{i}",
            "mode": "wait",
            "timeout_s": COMMAND_TIMEOUT_S,
        }
        response = await http.post(command_url, json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "succeeded", response.text

    reads: dict[str, Call] = {
        "sdk_lan": sdk_lan_read,
        "raw_grpc": raw_grpc_read,
        "sdk_cloud": sdk_cloud_read,
        "raw_http": raw_http_read,
    }
    commands: dict[str, Call] = {
        "sdk_lan": sdk_command(lan, "bench-sl"),
        "raw_grpc": raw_grpc_command,
        "sdk_cloud": sdk_command(cloud, "bench-sc"),
        "raw_http": raw_http_command,
    }
    return reads, commands


async def interleaved(
    calls: dict[str, Call], count: int, profiler: cProfile.Profile | None
) -> dict[str, list[float]]:
    """WARM_UP calls of each way, then `count` each in turns of BLOCK, the order rotating."""
    names = list(calls)
    for name in names:
        for i in range(WARM_UP):
            await calls[name](-1 - i)
    samples: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    done = turn = 0
    while done < count:
        n = min(BLOCK, count - done)
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            one, out = calls[name], samples[name]
            profile = profiler is not None and name.startswith("sdk")
            for i in range(done, done + n):
                if profile:
                    assert profiler is not None
                    profiler.enable()
                began = clock()
                await one(i)
                out.append((clock() - began) * 1000)
                if profile:
                    assert profiler is not None
                    profiler.disable()
        done += n
        turn += 1
    return samples


async def until_path(client: BellhopClient, hotel: str, path: Served) -> float:
    """Read until a read is served by `path`; the time of that read's answer."""
    deadline = time.monotonic() + WAIT_S
    while True:
        with contextlib.suppress(Exception):
            device = await client.device(hotel, THERMOSTAT)
            if device.freshness.path is path:
                return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no read served by {path} within {WAIT_S:g} s")


async def switches(site: SdkSite, login: Any, count: int) -> tuple[list[float], list[float]]:
    """Cut the LAN port `count` times: ms to the first cloud read, and back to the LAN."""
    proxy = LinkProxy()
    proxy.target_port = site.lan_port
    await proxy.start()
    to_cloud: list[float] = []
    back: list[float] = []
    try:
        async with BellhopClient(
            cloud_url=site.relay_url,
            lan_target=f"127.0.0.1:{proxy.port}",
            credentials=login,
            trust_env=False,
        ) as client:
            await until_path(client, site.hotel_id, Served.LAN)
            for _ in range(count):
                for _ in range(20):  # a warm LAN connection, as mid-session
                    await client.device(site.hotel_id, THERMOSTAT)
                cut = time.perf_counter()
                proxy.refuse()
                served = await until_path(client, site.hotel_id, Served.CLOUD)
                to_cloud.append((served - cut) * 1000)
                restored = time.perf_counter()
                proxy.restore()
                served = await until_path(client, site.hotel_id, Served.LAN)
                back.append((served - restored) * 1000)
    finally:
        await proxy.close()
    return to_cloud, back


def ratio(sdk: list[float], raw: list[float]) -> float:
    return round(percentile(sdk, 50) / percentile(raw, 50), 3)


async def measure(site: SdkSite, reads: int, commands: int, profile: bool) -> dict[str, Any]:
    login = site.login()
    await login.login()
    token = await login.token()
    profiler = cProfile.Profile() if profile else None
    channel = grpc.aio.insecure_channel(site.lan_target)
    async with (
        BellhopClient(lan_target=site.lan_target, credentials=login) as lan,
        BellhopClient(cloud_url=site.relay_url, credentials=login, trust_env=False) as cloud,
        httpx.AsyncClient(base_url=site.relay_url, trust_env=False, timeout=15) as http,
    ):
        stub = lan_pb2_grpc.LanServiceStub(channel)
        read_calls, command_calls = ways(site, token, lan, cloud, stub, http)
        began = time.monotonic()
        read_ms = await interleaved(read_calls, reads, profiler)
        command_ms = await interleaved(command_calls, commands, profiler)
        seconds = time.monotonic() - began
    await channel.close()
    to_cloud, back = await switches(site, login, SWITCHES)
    await login.aclose()
    if profiler is not None:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
        stats.print_stats(r"bellhop_sdk|httpx|grpc|asyncio", 40)
        print(text.getvalue(), file=sys.stderr)

    figures: dict[str, Any] = {}
    for kind, samples in (("read", read_ms), ("command", command_ms)):
        for way, values in samples.items():
            figures[f"{way}_{kind}_p50_ms"] = round(percentile(values, 50), 3)
            figures[f"{way}_{kind}_p99_ms"] = round(percentile(values, 99), 3)
        figures[f"lan_{kind}_ratio"] = ratio(samples["sdk_lan"], samples["raw_grpc"])
        figures[f"cloud_{kind}_ratio"] = ratio(samples["sdk_cloud"], samples["raw_http"])
    lan_ratio = max(figures["lan_read_ratio"], figures["lan_command_ratio"])
    cloud_ratio = max(figures["cloud_read_ratio"], figures["cloud_command_ratio"])
    return {
        "lan_overhead_ratio": lan_ratio,
        "cloud_overhead_ratio": cloud_ratio,
        "switch_ms": round(max(to_cloud), 1),
        "switch_p50_ms": round(percentile(to_cloud, 50), 1),
        "switch_samples_ms": [round(v, 1) for v in to_cloud],
        "switch_back_ms": round(max(back), 1),
        **figures,
        "reads_per_way": reads,
        "commands_per_way": commands,
        "measured_s": round(seconds, 1),
        "target_overhead_ratio": TARGET_OVERHEAD,
        "target_switch_ms": TARGET_SWITCH_MS,
        "ok": lan_ratio <= TARGET_OVERHEAD
        and cloud_ratio <= TARGET_OVERHEAD
        and max(to_cloud) <= TARGET_SWITCH_MS,
        "profiled": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 reads, 500 commands a way")
    parser.add_argument("--profile", action="store_true", help="cProfile the SDK's calls")
    args = parser.parse_args()
    scale = 1 if args.quick else 3
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp,
        sdk_site_at(Path(tmp)) as site,
    ):
        print(f"site ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        figures = asyncio.run(measure(site, 1000 * scale, 500 * scale, args.profile))
    figures["total_s"] = round(time.monotonic() - started, 1)
    report(figures)


if __name__ == "__main__":
    main()
