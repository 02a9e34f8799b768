"""A running gateway and a running relay expose metrics Prometheus can read.

A relay process and an enrolled gateway process with `[metrics] enabled`; a device publishes
telemetry and one malformed message. The gateway's `/metrics`, parsed with the Prometheus
parser, counts every accepted message, the malformed one under its reason, its device online
and its bridge open with nothing left to send, then a command nobody answers in the latency
histogram; the relay's `/metrics` parses too and counts the enrolment and the requests it
answered. A clean stop of the gateway closes its metrics port.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

import grpc
import httpx
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role
from google.protobuf.duration_pb2 import Duration
from prometheus_client.parser import text_string_to_metric_families

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker, device_client, free_port
from tests.support.relay_process import RelayProcess, bytecode_cache, enrol_gateway

DEVICE: Final = "r101-env"
SENT: Final = 20

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def scrape(url: str) -> Samples:
    """Every sample at `url`, by name and labels, as Prometheus's own parser reads them."""
    with httpx.Client(timeout=5, trust_env=False) as http:
        answer = http.get(url)
    answer.raise_for_status()
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def unanswered_ping(port: int, token: str) -> str:
    """A command the device never answers (it is not listening): its result's status."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await lan_pb2_grpc.LanServiceStub(channel).SendCommand(
            lan_pb2.SendCommandRequest(
                device_id=DEVICE, name="ping", timeout=Duration(nanos=200_000_000)
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    return str(common_pb2.CommandStatus.Name(answer.result.status))


@pytest.mark.timeout(90)
async def test_a_running_gateway_and_relay_are_scraped(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    relay = RelayProcess(tmp_path / "relay")
    relay.start()
    gateway = EdgeProcess(tmp_path / "edge.toml")
    try:
        tenant = relay.tenant()
        hotel_id = tenant.hotel_id  # an enrolled gateway serves the relay's hotel id
        gw = mosquitto.add_gateway(hotel_id)
        dev = mosquitto.add_device(hotel_id, DEVICE)
        mosquitto.reload()
        metrics_port = free_port()
        config = tmp_path / "edge.toml"
        api_port = write_config(
            config,
            hotel_id=hotel_id,
            mosquitto=mosquitto,
            gateway=gw,
            devices={DEVICE: "environment_sensor"},
            extra=f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{metrics_port}"\n',
        )
        enrol_gateway(config, relay, tenant.enrolment_token())
        gateway.start()
        await until(lambda: gateway.subscribed() >= 1, 30, "gateway subscribed")
        topic = codec.topic(hotel_id, DEVICE, Channel.TELEMETRY)
        base = int(time.time() * 1000) - SENT
        async with device_client(mosquitto, dev, DEVICE) as device:
            for seq in range(SENT):
                body = {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"temperature": 21.5}}
                await device.publish(topic, json.dumps(body).encode(), qos=1)
            await device.publish(topic, b'{"v": 1, "ts": ', qos=1)

        edge_url = f"http://127.0.0.1:{metrics_port}/metrics"
        seen: Samples = {}

        def settled() -> bool:
            nonlocal seen
            seen = scrape(edge_url)
            return (
                value(seen, "bellhop_edge_messages_accepted_total") == SENT
                and value(seen, "bellhop_edge_messages_rejected_total", reason="malformed_json")
                == 1
                and value(seen, "bellhop_edge_bridge_connected") == 1
                and value(seen, "bellhop_edge_outbox_backlog", lane="bulk") == 0
            )

        try:
            await until(settled, 30, "the gateway's metrics show every message, sent on")
        except TimeoutError:
            pytest.fail(f"last scrape: {seen}\n{gateway.log_tail()}")
        assert value(seen, "bellhop_edge_info", hotel=hotel_id, version="0.1.0") == 1
        assert value(seen, "bellhop_edge_devices_online") == 1
        assert value(seen, "bellhop_edge_bridge_state", state="open") == 1
        assert value(seen, "bellhop_edge_bridge_state", state="not_enrolled") == 0
        assert value(seen, "bellhop_edge_bridge_lag_seconds") == 0
        assert value(seen, "bellhop_edge_broker_connected") == 1
        assert value(seen, "bellhop_edge_writer_queue_depth") is not None
        assert (value(seen, "bellhop_edge_writer_ops_committed_total") or 0) > 0
        assert value(seen, "process_start_time_seconds")

        token = LocalTokens(tmp_path / "edge" / "staff-tokens.json").create("desk", Role.STAFF)
        assert await unanswered_ping(api_port, token) == "COMMAND_STATUS_TIMED_OUT"
        timed_out = value(
            scrape(edge_url), "bellhop_edge_command_seconds_count", status="timed_out"
        )
        assert timed_out == 1

        relay_seen = scrape(f"{relay.url}/metrics")
        assert value(relay_seen, "bellhop_cloud_gateways_enrolled_total") == 1
        ready = value(
            relay_seen,
            "bellhop_cloud_http_requests_total",
            method="GET",
            route="/readyz",
            status="200",
        )
        assert ready is not None
        assert ready >= 1

        # The metrics server is one of the gateway's tasks: a clean stop closes it too.
        assert gateway.stop() == 0, gateway.log_tail()
        with pytest.raises(httpx.ConnectError):
            scrape(edge_url)
    finally:
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.stop()
        relay.close()
