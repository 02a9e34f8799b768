"""A relay killed with SIGKILL while a notification is being sent: after the restart the
contact is still told (no loss), and the channel that had the request open never gets
it a second time (no double notification). Real processes: relay, gateway, broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from bellhop_devices.messages import Channel

from tests.integration.edge.conftest import FakeDevice, device_client
from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker
from tests.support.relay_process import RelayProcess, Tenant, bytecode_cache, enrol_gateway
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.timeout(120)]

DOOR: Final = "r101-door"
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.5
connect_timeout_s = 2
"""
# A short lease, so that the restarted relay settles the interrupted send soon.
SETTINGS: Final[dict[str, str | int | float]] = {
    "notify_poll_s": 0.1,
    "notify_send_timeout_s": 3,
    "notify_lease_margin_s": 0.5,
    "notify_retry_base_s": 0.2,
    "notify_private_targets": '["127.0.0.0/8"]',  # the webhook receivers listen on loopback
}


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def attempts(tenant: Tenant) -> list[tuple[str, int, str]]:
    page = tenant.get("/notifications/attempts", limit=50)
    return [(a["channel_id"], a["number"], a["outcome"]) for a in reversed(page["items"])]


async def test_a_relay_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    relay = RelayProcess(tmp_path / "relay", settings=SETTINGS)
    edge: EdgeProcess | None = None
    async with WebhookReceiver() as held, WebhookReceiver() as second:
        try:
            await asyncio.to_thread(relay.start)
            tenant = relay.tenant()
            with relay.http() as http:
                answer = http.put(
                    f"/v1/hotels/{tenant.hotel_id}/notifications",
                    json={
                        "contacts": [
                            {
                                "name": "Desk",
                                "channels": [
                                    {"url": held.apprise_url("/held")},
                                    {"url": second.apprise_url("/second")},
                                ],
                            }
                        ]
                    },
                    headers=tenant.headers,
                )
            assert answer.status_code == 200, answer.text
            first_id, second_id = (c["id"] for c in answer.json()["contacts"][0]["channels"])

            gateway = mosquitto.add_gateway(tenant.hotel_id)
            creds = mosquitto.add_devices(tenant.hotel_id, [DOOR])[DOOR]
            mosquitto.reload()
            (tmp_path / "gateway").mkdir()
            config = tmp_path / "gateway" / "edge.toml"
            write_config(
                config,
                hotel_id=tenant.hotel_id,
                mosquitto=mosquitto,
                gateway=gateway,
                devices={DOOR: "door_sensor"},
                extra=BRIDGE,
            )
            await asyncio.to_thread(enrol_gateway, config, relay, tenant.enrolment_token())
            edge = EdgeProcess(config)
            edge.start()
            held.hold()  # the first channel takes the request and does not answer
            async with device_client(mosquitto, tenant.hotel_id, DOOR, creds) as client:
                door = FakeDevice(tenant.hotel_id, DOOR, client)
                await until(lambda: _linked(relay, tenant), 30, "the gateway bridged")
                body = {"v": 1, "ts": int(time.time() * 1000), "kind": "breach", "data": {}}
                await door.send(Channel.EVENT, body)
                await held.wait_for(1, timeout=30)
            relay.kill()  # mid-send: the row is `sending`, its attempt unresolved
            held.release()
            await asyncio.to_thread(relay.start)
            # The lease runs out, the send is settled as unknown, the next channel tells
            # the contact: nothing is lost.
            (told,) = await second.wait_for(1, timeout=30)
            await until(lambda: len(attempts(tenant)) == 2, 10, "both attempts recorded")
            assert attempts(tenant) == [(first_id, 1, "unknown"), (second_id, 1, "sent")]
            # Nothing was sent twice: one request each, with different keys.
            assert len(held.requests) == 1
            assert len(second.requests) == 1
            assert held.requests[0].key != told.key
            assert told.body["title"].startswith("Bellhop: critical breach")
        finally:
            if edge is not None:
                edge.stop()
            relay.close()


def _linked(relay: RelayProcess, tenant: Tenant) -> bool:
    try:
        links: list[dict[str, Any]] = tenant.get("/sync")
    except (AssertionError, httpx.HTTPError):
        return False
    return any(link["connected"] for link in links)
