"""What the relay's bridge tests share: the endpoint on a free port, an enrolled
hotel, a real gateway for it, and a hand-driven gateway for frames a real one
never sends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Acked, EdgeConnection, frames
from bellhop_cloud.bridge.endpoint import BRIDGE_PATH, BridgeEndpoint
from bellhop_cloud.relay import Relay
from bellhop_devices.messages import Channel
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.config import EdgeConfig
from bellhop_edge.core.commands import CommandRequest
from bellhop_edge.files import write_atomic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from tests.cloud.support import Account, Api, expect
from tests.integration.edge.conftest import FakeDevice, device_client, gateway_config, wait_until
from tests.support import waiting
from tests.support.mosquitto import Credentials, MosquittoBroker

BULK, PRIORITY = bridge_pb2.LANE_BULK, bridge_pb2.LANE_PRIORITY
READ_EVERY_S = 0.05  # between two reads of `eventually`


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """`wait_until`, with the longer default a bridge round trip needs."""
    await wait_until(predicate, timeout)


async def eventually(read: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Read (the relay's REST API, say) until the answer is truthy, and return it; an
    AssertionError naming `what` after `timeout` s."""
    return await waiting.until(read, timeout, what, every=READ_EVERY_S)


@contextlib.asynccontextmanager
async def bridge_server(
    relay: Relay, port: int = 0, *, endpoint_options: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Bridge]:
    """The relay's bridge endpoint on 127.0.0.1 (a free port unless given)."""
    settings = relay.config.model_copy(
        update={"bridge_revocation_check_s": 0.2, "bridge_handshake_timeout_s": 2.0, **config}
    )
    endpoint = BridgeEndpoint(relay, settings, **(endpoint_options or {}))
    async with endpoint.serving("127.0.0.1", port) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        yield Bridge(endpoint, int(bound))


@dataclass
class Bridge:
    endpoint: BridgeEndpoint
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{BRIDGE_PATH}"


@dataclass
class CloudHotel:
    """A hotel in the relay with one enrolled gateway, as its owner sees it."""

    api: Api
    owner: Account
    org_id: str
    hotel_id: str
    gateway_id: str
    key: Ed25519PrivateKey

    async def get(self, path: str, **params: Any) -> Any:
        answer = await self.api.http.get(
            f"/v1/hotels/{self.hotel_id}{path}", params=params, headers=self.owner.headers
        )
        return expect(answer, 200)

    async def points(self, device_id: str, metric: str = "humidity") -> list[dict[str, Any]]:
        body = await self.get(
            f"/devices/{device_id}/telemetry",
            metric=metric,
            start="2000-01-01T00:00:00Z",
            end="2100-01-01T00:00:00Z",
            limit=10_000,
        )
        points: list[dict[str, Any]] = body["points"]
        return points

    async def link(self) -> dict[str, Any]:
        links = await self.get("/sync")
        assert len(links) == 1, links
        link: dict[str, Any] = links[0]
        return link

    async def linked(self, connected: bool = True) -> bool:
        """Whether the relay says a gateway of the hotel is (or, with False, none is) bridged."""
        links = await self.get("/sync")
        return bool(links) and any(link["connected"] for link in links) is connected

    async def knows(self, device_id: str) -> bool:
        """Whether the relay knows the device (the gateway's registry has arrived)."""
        answer = await self.api.http.get(
            f"/v1/hotels/{self.hotel_id}/devices/{device_id}", headers=self.owner.headers
        )
        return answer.status_code == 200

    async def online(self, device_id: str) -> None:
        """Until the gateway is bridged and the relay knows `device_id`."""
        await eventually(self.linked, "the gateway bridged")
        await eventually(lambda: self.knows(device_id), f"{device_id} known to the relay")

    async def command(self, command_id: str, state: str) -> dict[str, Any]:
        """The command's resource, once it is in `state`."""

        async def read() -> dict[str, Any] | None:
            body: dict[str, Any] = await self.get(f"/commands/{command_id}")
            return body if body["state"] == state else None

        found: dict[str, Any] = await eventually(read, f"command {command_id} {state}")
        return found

    async def revoke(self) -> None:
        url = f"/v1/hotels/{self.hotel_id}/gateways/{self.gateway_id}/revoke"
        expect(await self.api.http.post(url, headers=self.owner.headers), 200)


async def cloud_hotel(
    api: Api, key: Ed25519PrivateKey | None = None, owner_name: str = "owner"
) -> CloudHotel:
    owner = await api.account(owner_name)
    org_id = await api.org(owner, f"Org {api.test_name}")
    hotel_id = await api.hotel(owner, org_id, f"Hotel {api.test_name}")
    key = key or Ed25519PrivateKey.generate()
    token = await api.enrolment_token(owner, hotel_id)
    gateway = expect(await api.enrol(token, key), 201)
    return CloudHotel(api, owner, org_id, hotel_id, str(gateway["id"]), key)


def enrol_edge(data_dir: Path, hotel: CloudHotel, bridge_url: str) -> None:
    """What `bellhop edge enrol` leaves in the gateway's data directory."""
    Identity(hotel.gateway_id, hotel.hotel_id, "http://relay.test", bridge_url).save(data_dir)
    pem = hotel.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(Identity.directory(data_dir) / "key.pem", pem, mode=0o600)


class EdgeSite:
    """The hotel's side: its broker accounts, the gateway's config, devices that report."""

    def __init__(self, tmp_path: Path, mosquitto: MosquittoBroker, hotel: CloudHotel) -> None:
        self.tmp_path, self.mosquitto, self.hotel = tmp_path, mosquitto, hotel
        self.hotel_id = hotel.hotel_id
        self.gw_creds = mosquitto.add_gateway(self.hotel_id)
        self.creds: dict[str, Credentials] = mosquitto.add_devices(
            self.hotel_id, ["r102-env", "r101-door", "r101-thermostat"]
        )
        mosquitto.reload()

    def config(self, bridge_url: str, **extra: Any) -> EdgeConfig:
        config = gateway_config(
            self.tmp_path,
            self.hotel_id,
            self.mosquitto,
            self.gw_creds,
            bridge={"reconnect_min_s": 0.05, "reconnect_max_s": 0.3, "connect_timeout_s": 2},
            **extra,
        )
        if Identity.load(config.data_dir) is None:
            enrol_edge(config.data_dir, self.hotel, bridge_url)
        return config

    @contextlib.asynccontextmanager
    async def device(self, device_id: str) -> AsyncIterator[FakeDevice]:
        creds = self.creds[device_id]
        async with device_client(self.mosquitto, self.hotel_id, device_id, creds) as client:
            yield FakeDevice(self.hotel_id, device_id, client)

    async def telemetry(self, count: int, start: int = 1, device_id: str = "r102-env") -> None:
        """`count` humidity readings, `seq` from `start`, a millisecond apart."""
        base = int(time.time() * 1000) - 1_000_000
        async with self.device(device_id) as device:
            for seq in range(start, start + count):
                body = {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"humidity": seq % 100}}
                await device.send(Channel.TELEMETRY, body)

    async def breach(self) -> None:
        async with self.device("r101-door") as device:
            body = {"v": 1, "ts": int(time.time() * 1000), "kind": "breach", "data": {}}
            await device.send(Channel.EVENT, body)


def lan_setpoint(command_id: str, setpoint_c: float = 21.5) -> CommandRequest:
    """Staff's setpoint command for r101-thermostat, as the LAN API makes one."""
    expires_at = int(time.time() * 1000) + 60_000
    params = {"setpoint_c": setpoint_c}
    return CommandRequest(
        command_id, "r101-thermostat", "set_setpoint", params, expires_at, "staff"
    )


class RawGateway:
    """A gateway driven by hand: a real handshake, then any bytes the test wants to send."""

    def __init__(self, ws: ClientConnection, conn: EdgeConnection) -> None:
        self.ws, self.conn = ws, conn

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, url: str, gateway_id: str, hotel_id: str, key: Ed25519PrivateKey
    ) -> AsyncIterator[RawGateway]:
        loop = asyncio.get_running_loop()
        async with connect(url, compression=None, open_timeout=5) as ws:
            conn = EdgeConnection(
                gateway_id=gateway_id,
                hotel_id=hotel_id,
                software_version="test",
                sign=key.sign,
                now=loop.time(),
            )
            gateway = cls(ws, conn)
            await gateway.flush()
            yield gateway

    async def flush(self) -> None:
        for data in self.conn.data_to_send():
            await self.ws.send(data)

    async def pump(self, timeout: float = 5.0) -> list[Any]:
        """Read one frame from the relay and return what the connection made of it."""
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, bytes)
        self.conn.receive_data(data, asyncio.get_running_loop().time())
        await self.flush()
        return self.conn.events_received()

    async def until_event(self, kind: type, timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for event in await self.pump(timeout):
                    if isinstance(event, kind):
                        return event

    async def send_batch(self, events: list[bridge_pb2.OutboxEvent]) -> None:
        """A batch as a real gateway sends it (through its connection's bookkeeping)."""
        loop = asyncio.get_running_loop()
        self.conn.send_events([(e.lane, e.seq, e.SerializeToString()) for e in events], loop.time())
        await self.flush()

    async def register_thermostat(self, device_id: str = "r101-thermostat") -> None:
        """Report a registered thermostat in room 101 (the bulk lane's first event) and
        wait for the relay's acknowledgement: it is stored."""
        device = common_pb2.Device(
            device_id=device_id,
            room_id="101",
            kind=common_pb2.DEVICE_KIND_THERMOSTAT,
            registered=True,
        )
        await self.send_batch([bridge_pb2.OutboxEvent(seq=1, lane=BULK, device=device)])
        await self.until_event(Acked)

    async def send_raw_batch(self, events: list[bridge_pb2.OutboxEvent]) -> None:
        """A batch frame as is, past the edge's own checks; read answers with `frame()`."""
        await self.ws.send(frames.encode_batch(e.SerializeToString() for e in events))

    async def frame(self, kind: str, timeout: float = 5.0) -> Any:
        """The next frame of `kind` from the relay, read raw (heartbeats skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                data = await self.ws.recv()
                assert isinstance(data, bytes)
                frame = frames.decode(data)
                body = frame.WhichOneof("body")
                if body == kind:
                    return getattr(frame, kind)
                if body == "challenge":  # the handshake goes on
                    self.conn.receive_data(data, asyncio.get_running_loop().time())
                    await self.flush()

    async def error(self, timeout: float = 5.0) -> bridge_pb2.Error:
        """The relay's closing `Error` frame."""
        error: bridge_pb2.Error = await self.frame("error", timeout)
        return error
