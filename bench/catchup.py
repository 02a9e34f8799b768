"""Bridge catch-up: a gateway's backlog, buffered while the relay was down, delivered and applied.

A real gateway (`Gateway`: its store, writer and bridge client; Mosquitto for its MQTT
link, which stays idle) is enrolled through the relay's REST API and connected once,
as in production. Then the relay process stops, and `--events` outbox events are
written through the gateway's own store writer: telemetry from about a thousand
sensors, door and button events, some state reports and alerts, and at the very end,
behind the whole backlog, a handful of alarms (breach and gas events with the alerts
they raise, on the priority lane). The relay starts again (`bellhop cloud run`, its
own process) and the gateway's bridge delivers everything; the relay applies each
batch in one transaction and acknowledges it after the commit. Measured from the
moment the bridge is open again until the edge holds the acknowledgement of the last
event, on SQLite and on PostgreSQL (a database of its own, dropped afterwards). The
relay's tables are then counted against what the edge buffered: `lost` and
`duplicated` (device events carry no key, so a second copy would show).

The floor, measured in the same run on the same events: the outbox rows read from the
edge's SQLite with the store's own read (`outbox.read_after`), sent as batch frames of
1,000 (`frames.encode_batch`) over one bare `websockets` connection to a bare server
process that parses each frame and inserts its telemetry and device events with
`executemany` into the relay's own tables (a fresh database at the same schema), one
transaction per frame: no handshake, acknowledgements, window, deduplication or plan.
Rounds of it run one after the other once the gateway has stopped; the fastest counts.

The bridge runs with the edge's `batch_events` at its maximum, 1,000 (the edge's
default is 500: `--batch-events 500`), and the relay's default window. Rates move
with whatever else runs on the machine, so the CPU time each process spent per event
is printed too (`cpu_us_per_event`): the edge, the relay and PostgreSQL's server
processes for its database; the floor's client, server and PostgreSQL.

    .venv/bin/python bench/catchup.py [--quick] [--events N] [--stores sqlite,postgres]

Prints one JSON object as its last line: events, events_per_s_sqlite,
events_per_s_postgres, lost, duplicated, priority_first_ms (the slower store; each
store's too), floor_events_per_s_sqlite, floor_events_per_s_postgres, ratio_sqlite,
ratio_postgres, cpu_us_per_event, and the settings and targets.

This file runs the stores one after the other and reports; the parts are in
_catchup_backlog.py (the hotel and its backlog), _catchup_product.py (the gateway, the
outage and the catch-up), _catchup_floor.py (the floor) and _catchup_processes.py (the
relay process, CPU meters and bounded waits).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _catchup_backlog import Fleet
from _catchup_floor import FloorServer, floor_run, floor_server
from _catchup_processes import RelayProcess
from _catchup_product import Outcome, product_run
from _load import broker, report
from _pg import create_database, drop_database
from bellhop_bridge.frames import MAX_BATCH_EVENTS
from bellhop_edge.localbroker import MosquittoBroker

TARGET_RATIO: Final = 0.5
TARGET_EVENTS_PER_S: Final = {"sqlite": 100_000, "postgres": 50_000}
TARGET_PRIORITY_MS: Final = 1000.0


async def one_store(
    store: str, workdir: Path, mq: MosquittoBroker, fleet: Fleet, args: argparse.Namespace
) -> Outcome:
    await asyncio.to_thread(workdir.mkdir)
    databases: list[str] = []
    relay: RelayProcess | None = None
    floor: FloorServer | None = None
    floor_ready: asyncio.Task[None] | None = None
    try:
        if store == "sqlite":
            relay_url = f"sqlite:///{workdir / 'relay.db'}"
            floor_url = f"sqlite:///{workdir / 'floor.db'}"
        else:
            name, relay_url = await create_database("bellhop_catchup")
            databases.append(name)
            name, floor_url = await create_database("bellhop_catchup")
            databases.append(name)
        relay = RelayProcess(
            workdir=workdir,
            database_url=relay_url,
            window_events=args.window_events,
            window_bytes=args.window_bytes,
        )
        floor = FloorServer(floor_url, workdir)
        # Set up while the product's first steps run (relay, enrolment, backlog).
        floor_ready = asyncio.create_task(floor.start())
        outcome, edge_db, buffered = await product_run(store, relay, mq, fleet, args, floor_ready)
        # After the gateway has stopped: its reads and writes do not share the rounds.
        rounds = [
            await floor_run(floor, edge_db, buffered, reset=n > 0) for n in range(args.floor_rounds)
        ]
        # The faster round is the floor: background load only ever slows a round down.
        outcome.floor_events_per_s, floor_cpu = max(rounds, key=lambda r: r[0])
        outcome.cpu_us_per_event.update(floor_cpu)
        outcome.detail["floor_rounds_events_per_s"] = [round(rate) for rate, _ in rounds]
        print(
            f"{store}: {outcome.events_per_s:,.0f} events/s"
            f" (floor {outcome.floor_events_per_s:,.0f}),"
            f" alarms after {outcome.priority_first_ms:.0f} ms, lost {outcome.lost},"
            f" duplicated {outcome.duplicated}; CPU µs/event {outcome.cpu_us_per_event};"
            f" {outcome.detail}",
            file=sys.stderr,
        )
        return outcome
    finally:
        if floor_ready is not None and not floor_ready.done():
            floor_ready.cancel()
            await asyncio.gather(floor_ready, return_exceptions=True)
        for process in (relay, floor):
            if process is not None:
                await asyncio.to_thread(process.stop)
        for name in databases:
            await drop_database(name)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet.build()
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="bellhop-catchup-") as tmp, broker() as mq:
        for store in args.stores:
            outcomes[store] = await one_store(store, Path(tmp) / store, mq, fleet, args)

    def per(store: str, value: Callable[[Outcome], float], digits: int = 0) -> float | None:
        outcome = outcomes.get(store)
        return None if outcome is None else round(value(outcome), digits or None)

    def ratio(store: str) -> float | None:
        outcome = outcomes.get(store)
        if outcome is None or not outcome.floor_events_per_s:
            return None
        return round(outcome.events_per_s / outcome.floor_events_per_s, 3)

    return {
        "events": args.events,
        "events_per_s_sqlite": per("sqlite", lambda o: o.events_per_s),
        "events_per_s_postgres": per("postgres", lambda o: o.events_per_s),
        "lost": sum(o.lost for o in outcomes.values()),
        "duplicated": sum(o.duplicated for o in outcomes.values()),
        "priority_first_ms": round(max(o.priority_first_ms for o in outcomes.values()), 1),
        "priority_first_ms_sqlite": per("sqlite", lambda o: o.priority_first_ms, 1),
        "priority_first_ms_postgres": per("postgres", lambda o: o.priority_first_ms, 1),
        "floor_events_per_s_sqlite": per("sqlite", lambda o: o.floor_events_per_s),
        "floor_events_per_s_postgres": per("postgres", lambda o: o.floor_events_per_s),
        "ratio_sqlite": ratio("sqlite"),
        "ratio_postgres": ratio("postgres"),
        "cpu_us_per_event": {store: o.cpu_us_per_event for store, o in outcomes.items()},
        "reconnect_ms_sqlite": per("sqlite", lambda o: o.reconnect_ms),
        "reconnect_ms_postgres": per("postgres", lambda o: o.reconnect_ms),
        "fill_events_per_s": round(min(o.fill_events_per_s for o in outcomes.values())),
        "floor_rounds": args.floor_rounds,
        "batch_events": args.batch_events,
        "window_events": args.window_events,
        "window_bytes": args.window_bytes,
        "target_ratio": TARGET_RATIO,
        "target_events_per_s_sqlite": TARGET_EVENTS_PER_S["sqlite"],
        "target_events_per_s_postgres": TARGET_EVENTS_PER_S["postgres"],
        "target_priority_first_ms": TARGET_PRIORITY_MS,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events (under 60 s)")
    parser.add_argument("--events", type=int, help="events buffered (default 1,000,000)")
    parser.add_argument(
        "--stores",
        type=lambda s: s.split(","),
        default=["sqlite", "postgres"],
        help="comma-separated: sqlite, postgres",
    )
    parser.add_argument(
        "--batch-events",
        type=int,
        default=MAX_BATCH_EVENTS,
        help="the edge's [bridge] batch_events (its default is 500)",
    )
    parser.add_argument(
        "--window-events", type=int, default=5000, help="the relay's bridge_window_events"
    )
    parser.add_argument(
        "--window-bytes", type=int, default=8 << 20, help="the relay's bridge_window_bytes"
    )
    parser.add_argument(
        "--floor-rounds",
        type=int,
        help="floor rounds, one after the other; the fastest counts (default 2, 1 with --quick)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="cProfile the relay and the edge's loop into DIR"
    )
    parser.add_argument("--floor-server", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop  # the gateway's loop in production (`bellhop edge run`), and uvicorn's

    if args.floor_server:
        url, port, hotel_id = args.floor_server
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(floor_server(url, int(port), hotel_id))
        return
    if args.events is None:
        args.events = 100_000 if args.quick else 1_000_000
    if args.floor_rounds is None:
        args.floor_rounds = 1 if args.quick else 2
    if args.floor_rounds < 1:
        parser.error("at least one floor round")
    unknown = set(args.stores) - set(TARGET_EVENTS_PER_S)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # Every failed reconnect during the outage is a warning; the closes are counted instead.
    logging.getLogger("bellhop_edge.bridge.client").setLevel(logging.ERROR)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report(runner.run(run(args)))


if __name__ == "__main__":
    main()
