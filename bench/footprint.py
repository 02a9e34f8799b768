"""P6: gateway memory with 2,000 simulated devices reporting every 10 s.

Gateway (`bellhop edge run`) and devices (`bellhop sim`) run as their own
processes over a real Mosquitto, with per-device credentials. The gateway's
RSS is sampled every second once all devices are online; the figure is the
peak. Prints one JSON object as the last line with `rss_mib`.
Target: <= 150 MiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpc
import psutil
from _hotel import hotel, wait_online
from _load import report
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s of reporting instead of 120 s")
    parser.add_argument("--devices", type=int, default=2000)
    args = parser.parse_args()
    seconds = 30 if args.quick else 120
    with (
        tempfile.TemporaryDirectory(prefix="bellhop-footprint-") as tmp,
        hotel(
            Path(tmp), devices=args.devices, interval_s=10, hotel_id="bench-footprint"
        ) as running,
    ):
        channel = grpc.insecure_channel(f"127.0.0.1:{running.api_port}")
        stub = lan_pb2_grpc.LanServiceStub(channel)
        auth = (("authorization", f"Bearer {running.token}"),)
        wait_online(stub, auth, args.devices)
        gateway = psutil.Process(running.gateway.pid)
        samples = []
        cpu_before = gateway.cpu_times()
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            samples.append(gateway.memory_info().rss)
            time.sleep(1)
        cpu_after = gateway.cpu_times()
        status = stub.GetGatewayStatus(lan_pb2.GetGatewayStatusRequest(), metadata=auth)
        channel.close()
    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    report(
        {
            "devices": args.devices,
            "seconds": seconds,
            "devices_online": status.devices_online,
            "messages_accepted": status.accepted,
            "rss_mib": round(max(samples) / 2**20, 1),
            "rss_mib_end": round(samples[-1] / 2**20, 1),
            "gateway_cpu_pct": round(100 * busy / seconds, 1),
        }
    )


if __name__ == "__main__":
    main()
