"""One simulated device: its own MQTT connection speaking protocol v1.

The behaviour lives in a sans-I/O model (`models.py`) and the command
bookkeeping in `codec.CommandGuard`; this module is the asyncio driver that
connects, publishes, listens for commands and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

import aiomqtt

from bellhop_devices import codec
from bellhop_devices.messages import (
    Ack,
    Channel,
    DeviceKind,
    Event,
    JsonValue,
    StateReport,
    Status,
    Telemetry,
)
from bellhop_devices.sim.faults import Faults, garbage_payload
from bellhop_devices.sim.models import DeviceModel, model_for

__all__ = [
    "Broker",
    "DeviceStats",
    "Link",
    "SimulatedDevice",
    "backoff",
    "wall_clock_ms",
]

log = logging.getLogger("bellhop.sim")


@dataclass(frozen=True, slots=True)
class Broker:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    # CA bundle that signed the broker's certificate; None: the system's CAs.
    ca: Path | None = None


class Link(StrEnum):
    """Where a simulated device's connection stands."""

    IDLE = "idle"
    CONNECTING = "connecting"
    ONLINE = "online"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass(slots=True)
class DeviceStats:
    """Counters of one device (summed by the hotel for its summary line)."""

    published: int = 0
    telemetry: int = 0
    events: int = 0
    commands: int = 0
    duplicates: int = 0
    expired: int = 0
    bad_commands: int = 0
    acks_dropped: int = 0
    garbage: int = 0
    connects: int = 0
    disconnects: int = 0

    def add(self, other: DeviceStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def backoff(
    *, initial: float = 0.5, factor: float = 2.0, cap: float = 30.0, jitter: float = 0.5
) -> Iterator[float]:
    """Capped exponential reconnect delays, each cut by up to `jitter` at random
    so a hotel's devices do not reconnect in lockstep after a broker restart."""
    delay = initial
    while True:
        yield delay * (1 - jitter * random.random())
        delay = min(cap, delay * factor)


class _StoppedError(Exception):
    """Raised inside a session's task group to end it on request."""


class SimulatedDevice:
    """A device of `kind` with its own client id, credentials and Will.

    Use as an async context manager (or `start`/`stop`). While running it keeps
    one connection up, reconnecting with delays from `reconnect_delays()`
    (a fresh iterator after every connection that came online).
    """

    __slots__ = (
        "_broker",
        "_client",
        "_clock",
        "_connect_gate",
        "_faults",
        "_firmware",
        "_guard",
        "_interval_s",
        "_jitter",
        "_keepalive",
        "_last_state",
        "_online",
        "_password",
        "_prefix",
        "_reconnect_delays",
        "_rng",
        "_seq",
        "_stop",
        "_task",
        "_timeout_s",
        "_username",
        "device_id",
        "hotel_id",
        "kind",
        "link",
        "model",
        "room_id",
        "stats",
    )

    def __init__(
        self,
        *,
        hotel_id: str,
        device_id: str,
        kind: DeviceKind,
        broker: Broker,
        room_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        interval_s: float = 10.0,
        jitter: float = 0.1,
        faults: Faults | None = None,
        firmware: str = "sim-1.0.0",
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
        rng: random.Random | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        connect_gate: asyncio.Semaphore | None = None,
    ) -> None:
        self._prefix = codec.topic(hotel_id, device_id, Channel.CMD)[: -len("cmd")]
        self.hotel_id = hotel_id
        self.device_id = device_id
        self.room_id = room_id
        self.kind = kind
        self._broker = broker
        self._username = username
        self._password = password
        self._interval_s = interval_s
        self._jitter = jitter
        self._faults = faults or Faults()
        self._firmware = firmware
        self._reconnect_delays = reconnect_delays
        self._rng = rng or random.Random()
        self._clock = clock
        self._keepalive = keepalive_s
        self._timeout_s = timeout_s
        # Shared by a hotel's devices so 2,000 of them do not all connect at once.
        self._connect_gate = connect_gate
        self.model: DeviceModel = model_for(kind, self._rng, clock())
        self._guard = codec.CommandGuard(device_id)
        self._seq = 0
        self._last_state: dict[str, JsonValue] | None = None
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._online = asyncio.Event()
        self.link = Link.IDLE
        self.stats = DeviceStats()

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Faults can change while running (e.g. go silent mid-test)."""
        self._faults = faults

    def topic(self, channel: Channel) -> str:
        return self._prefix + channel.value

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SimulatedDevice:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.device_id} is already running")
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"sim-device-{self.device_id}")

    async def stop(self, *, timeout_s: float = 5.0) -> None:
        """Say goodbye (retained `offline` status), disconnect and end the task."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            # A cancellation can be lost inside the MQTT client's publish (asyncio.wait_for
            # in Python 3.11 drops one that lands as a QoS 1 publish completes): cancel
            # again until the task is really over, each time bounded.
            while not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), timeout_s)
        finally:
            self._task = None
            self.link = Link.STOPPED

    async def wait_online(self, timeout_s: float = 10.0) -> None:
        """Until the birth message is out."""
        await asyncio.wait_for(self._online.wait(), timeout_s)

    def drop_connection(self) -> None:
        """Cut the TCP connection without DISCONNECT, as a crash or power cut
        would: the broker publishes the Will and the device reconnects."""
        client = self._client
        if client is None:
            return
        # aiomqtt has no abort; shutting the socket down underneath paho is how.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------ connection

    def _new_client(self) -> aiomqtt.Client:
        tls = None
        if self._broker.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=None if self._broker.ca is None else str(self._broker.ca)
            )
        return aiomqtt.Client(
            self._broker.host,
            self._broker.port,
            identifier=f"{self.device_id}@{self.hotel_id}",
            username=self._username,
            password=self._password,
            will=aiomqtt.Will(self.topic(Channel.STATUS), codec.WILL_PAYLOAD, qos=1, retain=True),
            keepalive=self._keepalive,
            timeout=self._timeout_s,
            tls_params=tls,
            # Commands and acks are latency-bound small packets: no Nagle delay.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _run(self) -> None:
        delays: Iterator[float] | None = None
        try:
            while not self._stop.is_set():
                self.link = Link.CONNECTING
                went_online, failure = await self._connect_and_serve()
                if self._stop.is_set():
                    break
                self.stats.disconnects += went_online
                if went_online or delays is None:
                    delays = self._reconnect_delays()
                delay = next(delays)
                log.warning("%s: %s; reconnecting in %.1f s", self.device_id, failure, delay)
                self.link = Link.BACKING_OFF
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            self.link = Link.STOPPED

    async def _connect_and_serve(self) -> tuple[bool, str]:
        """One connection, from CONNECT to its end: (came online, why it ended)."""
        client = self._new_client()
        self._online.clear()
        failure = "stopped"
        went_online = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self._connect_gate or contextlib.nullcontext():
                    await stack.enter_async_context(client)
                self._client = client
                went_online = True
                await self._serve(client)
        except* aiomqtt.MqttError as group:
            failure = f"connection lost ({group.exceptions[0]})"
        finally:
            self._client = None
            self._online.clear()
        return went_online, failure

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topic(Channel.CMD), qos=1)
        await client.subscribe(codec.broadcast_topic(self.hotel_id), qos=1)
        now = self._clock()
        await self._publish(
            client,
            Channel.STATUS,
            codec.encode(Status(self.device_id, True, now, self.kind, self._firmware)),
            qos=1,
            retain=True,
        )
        self._last_state = None
        await self._publish_state(client, now)
        self.stats.connects += 1
        self.link = Link.ONLINE
        self._online.set()
        log.debug("%s: online", self.device_id)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._publish_loop(client), name=f"{self.device_id}-publish")
                tasks.create_task(self._command_loop(client), name=f"{self.device_id}-commands")
                if self._faults.disconnect_every_s is not None:
                    tasks.create_task(
                        # Spread so a hotel's devices do not all drop at once.
                        self._drop_after(
                            self._faults.disconnect_every_s * self._rng.uniform(0.5, 1.5)
                        ),
                        name=f"{self.device_id}-drop",
                    )
                tasks.create_task(self._until_stopped(), name=f"{self.device_id}-stop")
        except* _StoppedError:
            await self._goodbye(client)

    async def _until_stopped(self) -> None:
        await self._stop.wait()
        raise _StoppedError

    async def _drop_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        log.info("%s: dropping the connection (fault)", self.device_id)
        self.drop_connection()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        # A clean DISCONNECT suppresses the Will, so say offline ourselves.
        status = Status(self.device_id, False, self._clock())
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self.topic(Channel.STATUS),
                codec.encode(status),
                qos=1,
                retain=True,
                timeout=min(self._timeout_s, 2.0),
            )

    # -------------------------------------------------------------- publish

    async def _publish(
        self,
        client: aiomqtt.Client,
        channel: Channel,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
    ) -> None:
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        await client.publish(self.topic(channel), payload, qos=qos, retain=retain)
        # Python 3.11's wait_for (aiomqtt's, for the PUBACK) drops a cancellation landing
        # as the PUBACK arrives: raise one asked for during the call (not one left pending).
        if task is not None and task.cancelling() > asked:
            raise asyncio.CancelledError
        self.stats.published += 1

    async def _publish_state(self, client: aiomqtt.Client, now: int) -> None:
        payload = self._changed_state(now)
        if payload is not None:
            await self._publish(client, Channel.STATE, payload, qos=1, retain=True)

    def _changed_state(self, now: int) -> bytes | None:
        """The state payload to publish, if the state changed since the last one."""
        state = self.model.state()
        if state is None or state == self._last_state or self._faults.silent:
            return None
        self._last_state = dict(state)
        return codec.encode(StateReport(self.device_id, now, state))

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        rng = self._rng
        # Spread a hotel's devices over the interval instead of in bursts.
        last = loop.time()
        next_at = last + rng.uniform(0, self._interval_s)
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            now_s = loop.time()
            next_at += self._interval_s * (1 + rng.uniform(-self._jitter, self._jitter))
            next_at = max(next_at, now_s)
            events = self.model.advance(now_s - last, self._clock())
            last = now_s
            if self._faults.silent:
                continue
            now = self._clock()
            for event in events:
                self.stats.events += 1
                await self._publish(
                    client,
                    Channel.EVENT,
                    codec.encode(Event(self.device_id, now, event.kind, event.data)),
                    qos=1,
                )
            await self._publish_state(client, now)
            payload = codec.encode(Telemetry(self.device_id, now, self._seq, self.model.metrics()))
            self._seq = (self._seq + 1) & 0xFFFF_FFFF
            if self._faults.garbage_probability and rng.random() < self._faults.garbage_probability:
                payload = garbage_payload(rng, payload)
                self.stats.garbage += 1
            await self._publish(client, Channel.TELEMETRY, payload, qos=0)
            self.stats.telemetry += 1

    # ------------------------------------------------------------- commands

    async def _command_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            if not isinstance(payload, bytes | bytearray):
                payload = b""
            await self._on_command(client, bytes(payload))

    async def _on_command(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            cmd = codec.decode_command(payload)
        except codec.DecodeError as exc:
            # Without a trustworthy id there is nothing to acknowledge.
            self.stats.bad_commands += 1
            log.warning("%s: dropped a bad command (%s)", self.device_id, exc)
            return
        now = self._clock()
        verdict = self._guard.check(cmd, now)
        ack: Ack | None
        state: bytes | None = None
        if verdict.kind is codec.VerdictKind.EXECUTE:
            self.stats.commands += 1
            outcome = self.model.execute(cmd, now)
            ack = Ack(self.device_id, cmd.id, outcome.status, outcome.result, outcome.error)
            self._guard.record(ack)
            log.info("%s: %s %s -> %s", self.device_id, cmd.name, cmd.id, outcome.status)
            state = self._changed_state(now)
        elif verdict.kind is codec.VerdictKind.DUPLICATE:
            self.stats.duplicates += 1
            ack = verdict.ack
            log.info("%s: duplicate command %s, resending its ack", self.device_id, cmd.id)
        else:
            self.stats.expired += 1
            ack = verdict.ack
            log.info("%s: refused expired command %s", self.device_id, cmd.id)
        faults = self._faults
        if faults.silent:
            ack = None
        elif ack is not None and self._rng.random() < faults.drop_ack_probability:
            self.stats.acks_dropped += 1
            log.info("%s: dropping the ack of %s (fault)", self.device_id, cmd.id)
            ack = None
        if ack is not None and faults.ack_delay_s:
            if state is not None:
                await self._publish(client, Channel.STATE, state, qos=1, retain=True)
                state = None
            await asyncio.sleep(faults.ack_delay_s)
        # State before ack on the wire, without waiting for the state's PUBACK
        # first: the ack is what the edge's caller is waiting for.
        publishes = []
        if state is not None:
            publishes.append(self._publish(client, Channel.STATE, state, qos=1, retain=True))
        if ack is not None:
            publishes.append(self._publish(client, Channel.ACK, codec.encode(ack), qos=1))
        await asyncio.gather(*publishes)
