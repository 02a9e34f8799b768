"""`bellhop sim`: run a simulated hotel of devices against an MQTT broker.

Only argparse and the standard library at the top: the simulator itself is
imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="simulate a hotel's devices (protocol v1 over MQTT)",
        description="Run simulated devices, one MQTT connection each, until Ctrl-C or --duration.",
    )
    parser.add_argument("--hotel", help="hotel id (default: the provisioning file's)")
    parser.add_argument(
        "--rooms",
        type=int,
        default=10,
        help="rooms to simulate without --provisioning (default 10)",
    )
    parser.add_argument(
        "--broker", metavar="HOST:PORT", help="broker address (default 127.0.0.1:1883)"
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca", type=Path, help="CA file that signed the broker's certificate")
    parser.add_argument(
        "--provisioning",
        type=Path,
        metavar="FILE",
        help="devices, credentials and broker from a provisioning JSON file",
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between telemetry (default 10)"
    )
    parser.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)"
    )
    parser.add_argument(
        "--summary-every", type=float, default=30.0, help="seconds between summary lines"
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--drop-acks",
        type=float,
        default=0.0,
        metavar="P",
        help="probability a command runs but its ack is lost",
    )
    faults.add_argument(
        "--ack-delay", type=float, default=0.0, metavar="S", help="seconds to wait before each ack"
    )
    faults.add_argument(
        "--garbage",
        type=float,
        default=0.0,
        metavar="P",
        help="probability a telemetry message is replaced by garbage",
    )
    faults.add_argument(
        "--disconnect-every",
        type=float,
        metavar="S",
        help="cut each connection this often (the Will fires)",
    )
    faults.add_argument("--silent", action="store_true", help="stay connected but publish nothing")
    parser.set_defaults(handler=run)


def _broker_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker must be HOST:PORT, got {value!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from bellhop_devices.errors import DevicesError

    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("bellhop.sim")
    try:
        hotel = _build_hotel(args)
    except (DevicesError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(_serve(hotel, args))


def _build_hotel(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from bellhop_devices import sim

    faults = sim.Faults(
        drop_ack_probability=args.drop_acks,
        ack_delay_s=args.ack_delay,
        garbage_probability=args.garbage,
        disconnect_every_s=args.disconnect_every,
        silent=args.silent,
    )
    options: dict[str, Any] = {"interval_s": args.interval, "faults": faults, "seed": args.seed}
    if args.provisioning is not None:
        provisioning = sim.load_provisioning(args.provisioning)
        if args.broker is not None:
            host, port = _broker_address(args.broker)
            provisioning = replace(
                provisioning, broker=replace(provisioning.broker, host=host, port=port)
            )
        return sim.SimulatedHotel.from_provisioning(provisioning, hotel_id=args.hotel, **options)
    if args.hotel is None:
        raise ValueError("--hotel is required without --provisioning")
    host, port = _broker_address(args.broker or "127.0.0.1:1883")
    broker = sim.Broker(host=host, port=port, tls=args.tls or args.ca is not None, ca=args.ca)
    return sim.SimulatedHotel(
        hotel_id=args.hotel, broker=broker, devices=sim.layout(args.rooms), **options
    )


async def _serve(hotel: Any, args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import logging
    import signal

    log = logging.getLogger("bellhop.sim")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with hotel:
        async with asyncio.TaskGroup() as tasks:
            summary = tasks.create_task(_summaries(hotel, args.summary_every), name="sim-summary")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
            summary.cancel()
        log.info("%s: stopping", hotel.hotel_id)
    log.info("%s", _summary_line(hotel))
    return 0


async def _summaries(hotel: Any, every_s: float) -> None:
    import asyncio
    import logging

    log = logging.getLogger("bellhop.sim")
    while True:
        await asyncio.sleep(every_s)
        log.info("%s", _summary_line(hotel))


def _summary_line(hotel: Any) -> str:
    s = hotel.stats()
    return (
        f"{hotel.hotel_id}: {hotel.online()}/{len(hotel.devices)} online; "
        f"published {s.published} (telemetry {s.telemetry}, events {s.events}); "
        f"commands {s.commands}, duplicates {s.duplicates}, expired {s.expired}, "
        f"bad {s.bad_commands}; acks dropped {s.acks_dropped}; garbage {s.garbage}; "
        f"connects {s.connects}, disconnects {s.disconnects}"
    )
