"""The bridge under real faults: every event reaches the cloud once, whatever breaks.

Real processes throughout: Mosquitto, `bellhop edge run` enrolled with the real
`bellhop edge enrol`, and `bellhop cloud run` on SQLite (and PostgreSQL).
Devices report over MQTT (telemetry from several sensors, door and breach
events from door sensors) while the link or a process fails:

- a partition: the relay stopped (SIGTERM) while devices report and staff
  work on the LAN, then back;
- the gateway killed (SIGKILL) mid-stream and while it drains a backlog;
- the relay killed (SIGKILL) while it applies a backlog's batches;
- a half-open link: a proxy that stops forwarding without closing anything,
  which only the protocol's heartbeats can find.

Afterwards the relay must hold exactly what the gateway holds: every reading
(REST history), every device event in the gateway's order per device (the
relay's `device_events` table, which has no unique key, so an event applied
twice would show as two rows), and every alert as it stands on the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Final

import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2

from tests.e2e.bridge_site import DOORS, SMALL_WINDOW, STAFF, hotel, seconds_until, silence
from tests.support.edge_process import until
from tests.support.link_proxy import LinkProxy
from tests.support.mosquitto import MosquittoBroker
from tests.support.relay_process import (
    bytecode_cache,
    postgres_database,
)


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


# -- 1. partition ----------------------------------------------------------------------------
@pytest.mark.timeout(150)
async def test_a_partition_loses_nothing_and_repeats_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The relay stops (SIGTERM) while devices report and staff work on the LAN; back,
    it receives everything once, the staff's acknowledgement included."""
    async with hotel(tmp_path, mosquitto) as site:
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=60, door_events=20)
        await site.settled()

        status = relay.stop(signal.SIGTERM)
        # A clean stop: uvicorn shuts down, then `bellhop cloud run` exits with 0.
        assert status == 0, relay.tail()
        assert relay.logged("Application shutdown complete") == 1, relay.tail()
        await until(lambda: gateway.logged("shutting_down") >= 1, 10, "the gateway told why")

        before = devices.sent
        await devices.report(readings=250, door_events=80, breach_every=15)
        await devices.breach()
        await site.stored()
        # The LAN works on: the staff acknowledge the breach the relay has not heard of.
        async with gateway.lan() as (stub, auth):
            status_reply = await stub.GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=5, wait_for_ready=True
            )
            assert status_reply.broker_connected
            listed = await stub.ListAlerts(
                lan_pb2.ListAlertsRequest(states=[common_pb2.ALERT_STATE_RAISED]),
                metadata=auth,
                timeout=5,
            )
            breaches = [a for a in listed.alerts if a.kind == common_pb2.ALERT_KIND_BREACH]
            assert len(breaches) == len(DOORS)
            acked = await stub.AcknowledgeAlert(
                lan_pb2.AcknowledgeAlertRequest(alert_id=breaches[0].alert_id, note="on my way"),
                metadata=auth,
                timeout=5,
            )
        assert acked.alert.state == common_pb2.ALERT_STATE_ACKNOWLEDGED
        assert gateway.backlog() >= devices.sent - before  # held at the edge, not lost
        assert gateway.logged("cannot reach the relay") >= 1

        await asyncio.to_thread(relay.start)
        await site.assert_exactly_once()
        alerts = {a["alert_id"]: a for a in site.tenant.alerts()}
        assert alerts[breaches[0].alert_id]["state"] == "acknowledged"
        assert alerts[breaches[0].alert_id]["acknowledged_by"] == STAFF


# -- 2. the gateway killed ----------------------------------------------------------------------
@pytest.mark.timeout(150)
async def test_a_gateway_killed_mid_stream_and_while_draining_sends_everything_once(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """SIGKILL while devices report and the bridge streams, then three times while a
    backlog drains: a restarted gateway resends from the relay's acknowledgements, not
    from what it had recorded of them, and the relay applies each event once."""
    proxy = LinkProxy()
    async with hotel(tmp_path, mosquitto, settings=SMALL_WINDOW, proxy=proxy) as site:
        gateway, devices = site.gateway, site.devices
        # Mid-stream: killed while devices report and the bridge streams.
        reporting = asyncio.create_task(devices.report(readings=150, door_events=80))
        try:
            await until(lambda: gateway.committed() >= 200, 30, "streaming")
            gateway.kill()
            gateway.start()
        finally:
            await reporting
        await site.settled()

        # A backlog: the relay unreachable while the devices report.
        proxy.refuse()
        before = devices.sent
        await devices.report(readings=400, door_events=300, breach_every=25)
        await site.stored()
        backlog = gateway.backlog()
        assert backlog >= devices.sent - before
        proxy.restore()
        # Killed at different points of the drain; each restart resumes where the
        # relay's acknowledgements stopped, whatever the gateway had recorded of them.
        remaining = []
        for share in (0.8, 0.5, 0.2):

            def drained(share: float = share) -> bool:
                return gateway.backlog() <= backlog * share

            await until(drained, 60, f"drained to {share}")
            gateway.kill()
            remaining.append(gateway.backlog())
            gateway.start()
        assert all(r > 0 for r in remaining), f"killed after the drain ended: {remaining}"
        assert gateway.process.kills == 4
        await site.assert_exactly_once()


# -- 3. the relay killed -------------------------------------------------------------------------
@pytest.mark.timeout(200)
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_relay_killed_while_applying_batches_applies_each_once(
    tmp_path: Path, mosquitto: MosquittoBroker, store: str
) -> None:
    """SIGKILL three times while the relay applies a backlog of thousands: each batch
    and its lanes' positions commit together or not at all, so after each restart the
    gateway resends what was not acknowledged and nothing is applied twice."""
    async with contextlib.AsyncExitStack() as stack:
        database_url = None
        if store == "postgres":
            database_url = await stack.enter_async_context(postgres_database())
        proxy = LinkProxy()
        site = await stack.enter_async_context(
            hotel(
                tmp_path,
                mosquitto,
                database_url=database_url,
                settings=SMALL_WINDOW,
                proxy=proxy,
            )
        )
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=30, door_events=10)
        await site.settled()
        # A backlog of thousands, half of them device events (the rows a double
        # apply would duplicate), built while the relay is unreachable.
        proxy.refuse()
        before = devices.sent
        # Large enough that the relay, however fast, is still applying at each kill.
        await devices.report(readings=1200, door_events=1500, breach_every=120)
        await site.stored()
        backlog = gateway.backlog()
        assert backlog >= devices.sent - before
        proxy.restore()
        remaining = []
        for share in (0.75, 0.5, 0.25):
            # The relay may still be starting: it applies as soon as its bridge port is open.
            def applied(share: float = share) -> bool:
                return gateway.backlog() <= backlog * share

            await until(applied, 60, f"applied to {share}")
            relay.kill()
            remaining.append(gateway.backlog())
            relay.spawn()
        assert all(r > 0 for r in remaining), f"killed after the catch-up ended: {remaining}"
        await asyncio.to_thread(relay.wait_ready, 30)
        await site.assert_exactly_once()
        assert relay.kills == 3


# -- 4. a half-open link -----------------------------------------------------------------------
HEARTBEAT_S: Final = 0.5


@pytest.mark.timeout(150)
async def test_a_half_open_link_is_found_by_heartbeats_and_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The link stops carrying anything in both directions and nothing closes: each end
    finds it silent within three heartbeats, the gateway reconnects once the network
    is back, and what was sent meanwhile (and what was in flight) arrives once."""
    proxy = LinkProxy()
    settings: dict[str, str | int | float] = {"bridge_heartbeat_s": HEARTBEAT_S, **SMALL_WINDOW}
    async with hotel(tmp_path, mosquitto, settings=settings, proxy=proxy) as site:
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=50, door_events=20)
        await site.settled()

        before = devices.sent
        reporting = asyncio.create_task(devices.report(readings=300, door_events=100))
        watchers: list[asyncio.Future[float]] = []
        try:
            # Traffic flows, and then the link goes silent with batches in flight.
            await until(lambda: gateway.committed() >= before + 100, 30, "streaming")
            relay_timeouts = relay.logged("closed: peer_timeout")
            gateway_timeouts = gateway.logged("bridge closed: peer_timeout")
            unreachable = gateway.logged("cannot reach the relay")
            proxy.blackhole()
            silent_since = time.time()
            # Watched from a thread of its own: this loop is busy with the devices.
            watchers.append(
                asyncio.ensure_future(
                    asyncio.to_thread(
                        seconds_until, lambda: relay.logged("closed: peer_timeout") > relay_timeouts
                    )
                )
            )
            await reporting
            # And more while the link is dead.
            await devices.report(readings=100, door_events=40, breach_every=10)
            relay_took = await watchers[0]
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, *watchers, return_exceptions=True)
        await until(
            lambda: gateway.logged("bridge closed: peer_timeout") > gateway_timeouts, 10, "gateway"
        )
        # Three heartbeats of silence, none early, plus a busy machine's delay.
        bound = 3 * HEARTBEAT_S + 2.0
        assert relay_took <= bound, f"the relay took {relay_took:.2f} s to find the dead link"
        assert silence(relay.tail(100_000)) >= 3 * HEARTBEAT_S
        # The gateway finds it as soon, then waits out its close handshake (its
        # connect_timeout_s) on a link that answers nothing, and only then logs it.
        gateway_took = (
            gateway.logged_at("bridge closed: peer_timeout", gateway_timeouts) - silent_since
        )
        assert gateway_took <= bound + 2.0, f"the gateway took {gateway_took:.2f} s"
        assert silence(gateway.process.log_tail()) >= 3 * HEARTBEAT_S
        # A new connection into the dead network gives up too, within its own timeout.
        await until(lambda: gateway.logged("cannot reach the relay") > unreachable, 10, "dialled")
        await site.stored()
        assert gateway.backlog() > 0
        assert relay.logged("closed: peer_timeout") == relay_timeouts + 1

        opens = gateway.opens()
        proxy.restore()
        await until(lambda: gateway.opens() > opens, 30, "a new bridge")
        await site.assert_exactly_once()
