"""The device simulator against a real Mosquitto, seen by an edge-side listener
that decodes with the protocol codec."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest
from bellhop_devices import codec
from bellhop_devices.messages import (
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceKind,
    StateReport,
    Status,
    Telemetry,
)
from bellhop_devices.sim import (
    Broker,
    DeviceStats,
    Faults,
    Link,
    SimulatedDevice,
    SimulatedHotel,
    layout,
)

from .conftest import EdgeListener, Received, wait_until

pytestmark = pytest.mark.broker


def no_delay() -> Iterator[float]:
    return itertools.repeat(0.0)


def device(broker: Broker, hotel_id: str, kind: DeviceKind, **options: object) -> SimulatedDevice:
    return SimulatedDevice(
        hotel_id=hotel_id,
        device_id=f"r101-{kind.value}",
        kind=kind,
        broker=broker,
        interval_s=options.pop("interval_s", 0.05),  # type: ignore[arg-type]
        reconnect_delays=no_delay,
        **options,  # type: ignore[arg-type]
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def on(channel: Channel, device_id: str | None = None) -> Callable[[Received], bool]:
    def match(r: Received) -> bool:
        return r.topic.endswith("/" + channel.value) and (
            device_id is None or f"/{device_id}/" in r.topic
        )

    return match


async def test_birth_state_and_telemetry_decode(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.THERMOSTAT, firmware="2.1.0") as thermostat:
        await thermostat.wait_online()
        birth = await edge.next(on(Channel.STATUS))
        assert isinstance(birth.message, Status)
        assert birth.message.ts is not None
        assert abs(birth.message.ts - now_ms()) < 5_000
        assert birth.message == Status(
            thermostat.device_id, True, birth.message.ts, DeviceKind.THERMOSTAT, "2.1.0"
        )
        state = await edge.next(on(Channel.STATE))
        assert isinstance(state.message, StateReport)
        assert state.message.values == {"setpoint": 21, "mode": "heat"}
        seqs = []
        for _ in range(3):
            received = await edge.next(on(Channel.TELEMETRY))
            assert isinstance(received.message, Telemetry)
            assert set(received.message.metrics) == {"temperature", "setpoint"}
            assert abs(received.message.ts - now_ms()) < 5_000
            seqs.append(received.message.seq)
        assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


async def test_command_runs_once_and_a_duplicate_gets_the_same_ack(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.THERMOSTAT) as thermostat:
        await thermostat.wait_online()
        cmd = Command("c-dup-1", "set_setpoint", {"setpoint": 23.5}, now_ms() + 10_000)
        payload = codec.encode_command(cmd)
        await edge.publish(thermostat.topic(Channel.CMD), payload)
        first = await edge.next(on(Channel.ACK))
        assert first.message == Ack(
            thermostat.device_id, "c-dup-1", AckStatus.OK, {"setpoint": 23.5}
        )
        state = await edge.next(
            lambda r: isinstance(r.message, StateReport) and r.message.values["setpoint"] == 23.5
        )
        assert state.retain is False  # live delivery of a retained publish

        await edge.publish(thermostat.topic(Channel.CMD), payload)
        second = await edge.next(on(Channel.ACK))
        assert second.payload == first.payload
        assert (thermostat.stats.commands, thermostat.stats.duplicates) == (1, 1)


async def test_expired_command_is_refused_and_not_run(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.DOOR_LOCK) as lock:
        await lock.wait_online()
        cmd = Command("c-late-1", "unlock", {}, now_ms() - 1_000)
        await edge.publish(lock.topic(Channel.CMD), codec.encode_command(cmd))
        ack = await edge.next(on(Channel.ACK))
        assert ack.message == Ack(
            lock.device_id, "c-late-1", AckStatus.EXPIRED, error="command expired"
        )
        assert lock.model.state() == {"locked": True}
        assert lock.stats.commands == 0


async def test_unknown_command_and_bad_params_get_error_acks(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.LIGHT) as light:
        await light.wait_online()
        deadline = now_ms() + 10_000
        for cmd in (
            Command("c-err-1", "self_destruct", {}, deadline),
            Command("c-err-2", "set_light", {"brightness": 250}, deadline),
        ):
            await edge.publish(light.topic(Channel.CMD), codec.encode_command(cmd))
        first = (await edge.next(on(Channel.ACK))).message
        second = (await edge.next(on(Channel.ACK))).message
        assert isinstance(first, Ack)
        assert isinstance(second, Ack)
        assert (first.status, first.error) == (AckStatus.ERROR, "unknown_command: self_destruct")
        assert second.status is AckStatus.ERROR
        assert second.error is not None
        assert second.error.startswith("bad_params:")


async def test_bad_command_payload_is_dropped_and_counted(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.LIGHT) as light:
        await light.wait_online()
        await edge.publish(light.topic(Channel.CMD), b'{"id":"c-1","name":"set_light"')
        good = Command("c-after-bad", "set_light", {"on": True}, now_ms() + 10_000)
        await edge.publish(light.topic(Channel.CMD), codec.encode_command(good))
        ack = await edge.next(on(Channel.ACK))
        assert isinstance(ack.message, Ack)
        assert ack.message.id == "c-after-bad"
        assert light.stats.bad_commands == 1


async def test_cut_connection_makes_the_broker_publish_the_will(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    async with device(broker, hotel_id, DeviceKind.DOOR_SENSOR) as sensor:
        await sensor.wait_online()
        await edge.next(on(Channel.STATUS))
        sensor.drop_connection()
        will = await edge.next(on(Channel.STATUS))
        assert will.payload == b"offline"
        assert will.message == Status(sensor.device_id, online=False)
        rebirth = await edge.next(on(Channel.STATUS))
        assert isinstance(rebirth.message, Status)
        assert rebirth.message.online
        await sensor.wait_online()
        assert sensor.stats.connects == 2


async def test_disconnect_fault_fires_the_will_then_reconnects(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    faults = Faults(disconnect_every_s=0.2)
    async with device(broker, hotel_id, DeviceKind.LIGHT, faults=faults) as light:
        statuses = []
        for _ in range(4):
            received = await edge.next(on(Channel.STATUS))
            assert isinstance(received.message, Status)
            statuses.append(received.message.online)
        assert statuses == [True, False, True, False]
        assert light.stats.connects >= 2


async def test_clean_stop_publishes_a_retained_offline_status(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    sensor = device(broker, hotel_id, DeviceKind.GAS_SENSOR)
    async with sensor:
        await sensor.wait_online()
        await edge.next(on(Channel.STATUS))
    goodbye = await edge.next(on(Channel.STATUS))
    assert isinstance(goodbye.message, Status)
    assert not goodbye.message.online
    assert goodbye.message.ts is not None
    assert goodbye.payload != b"offline"  # the clean goodbye, not the Will


async def test_garbage_mode_produces_payloads_the_codec_rejects(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    faults = Faults(garbage_probability=1.0)
    async with device(broker, hotel_id, DeviceKind.ENVIRONMENT_SENSOR, faults=faults) as sensor:
        await sensor.wait_online()
        reasons: set[codec.RejectReason] = set()
        for _ in range(12):
            received = await edge.next(on(Channel.TELEMETRY))
            assert received.message is None
            assert received.error is not None
            reasons.add(received.error.reason)
        assert len(reasons) >= 2
        assert sensor.stats.garbage >= 12


async def test_dropped_ack_is_resent_when_the_command_is_retried(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    faults = Faults(drop_ack_probability=1.0)
    async with device(broker, hotel_id, DeviceKind.DOOR_LOCK, faults=faults) as lock:
        await lock.wait_online()
        cmd = Command("c-lost-1", "unlock", {"duration_s": 30}, now_ms() + 10_000)
        await edge.publish(lock.topic(Channel.CMD), codec.encode_command(cmd))
        # The device sends the changed state just before the ack: once the
        # state is here, and a marker after it, the ack would be here too.
        await edge.next(
            lambda r: isinstance(r.message, StateReport) and r.message.values["locked"] is False
        )
        assert not [r for r in await edge.barrier() if on(Channel.ACK)(r)]
        assert lock.stats.acks_dropped == 1
        lock.faults = Faults()
        await edge.publish(lock.topic(Channel.CMD), codec.encode_command(cmd))
        ack = await edge.next(on(Channel.ACK))
        assert ack.message == Ack(lock.device_id, "c-lost-1", AckStatus.OK, {"locked": False})
        assert (lock.stats.commands, lock.stats.duplicates, lock.stats.acks_dropped) == (1, 1, 1)


async def test_silent_device_stays_connected_but_publishes_nothing(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    # The device reads its clock at least once per publish round, silent or
    # not: a count of the rounds in which it could have published.
    clock_reads = 0

    def clock() -> int:
        nonlocal clock_reads
        clock_reads += 1
        return now_ms()

    async with device(broker, hotel_id, DeviceKind.THERMOSTAT, clock=clock) as thermostat:
        await thermostat.wait_online()
        await edge.next(on(Channel.TELEMETRY))
        thermostat.faults = Faults(silent=True)
        # A round already publishing when the fault was set finishes first.
        silenced_at = clock_reads
        await wait_until(lambda: clock_reads > silenced_at, "the next publish round")
        await edge.barrier()
        quiet_from = clock_reads
        await wait_until(lambda: clock_reads >= quiet_from + 5, "five silent publish rounds")
        assert await edge.barrier() == []
        assert thermostat.link is Link.ONLINE


async def test_hotel_answers_a_broadcast_from_every_device(
    broker: Broker, hotel_id: str, edge: EdgeListener
) -> None:
    specs = layout(3)
    assert len(specs) == 3 * 5 + 1
    async with SimulatedHotel(
        hotel_id=hotel_id, broker=broker, devices=specs, interval_s=5.0, seed=1
    ) as hotel:
        await hotel.wait_online(10)
        ping = Command("fleet-ping-1", "ping", {}, now_ms() + 10_000)
        await edge.publish(codec.broadcast_topic(hotel_id), codec.encode_command(ping))
        acked: set[str] = set()
        while len(acked) < len(specs):
            received = await edge.next(on(Channel.ACK))
            assert isinstance(received.message, Ack)
            assert received.message.status is AckStatus.OK
            acked.add(received.message.device_id)
        assert acked == {s.device_id for s in specs}
        assert hotel.online() == len(specs)
        total: DeviceStats = hotel.stats()
        assert total.commands == len(specs)
