import datetime

from bellhop.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("hello", "challenge", "proof", "welcome", "events", "ack", "command", "command_result", "snapshot_request", "snapshot", "heartbeat", "error", "alert_acknowledgement")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ALERT_ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    challenge: Challenge
    proof: Proof
    welcome: Welcome
    events: EventBatch
    ack: EventAck
    command: RemoteCommand
    command_result: RemoteCommandResult
    snapshot_request: SnapshotRequest
    snapshot: Snapshot
    heartbeat: Heartbeat
    error: Error
    alert_acknowledgement: AlertAcknowledgement
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., challenge: _Optional[_Union[Challenge, _Mapping]] = ..., proof: _Optional[_Union[Proof, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., events: _Optional[_Union[EventBatch, _Mapping]] = ..., ack: _Optional[_Union[EventAck, _Mapping]] = ..., command: _Optional[_Union[RemoteCommand, _Mapping]] = ..., command_result: _Optional[_Union[RemoteCommandResult, _Mapping]] = ..., snapshot_request: _Optional[_Union[SnapshotRequest, _Mapping]] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., alert_acknowledgement: _Optional[_Union[AlertAcknowledgement, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol_version", "gateway_id", "hotel_id", "software_version")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    gateway_id: str
    hotel_id: str
    software_version: str
    def __init__(self, protocol_version: _Optional[int] = ..., gateway_id: _Optional[str] = ..., hotel_id: _Optional[str] = ..., software_version: _Optional[str] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class Proof(_message.Message):
    __slots__ = ("signature",)
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    def __init__(self, signature: _Optional[bytes] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("last_acked_seq", "heartbeat_interval_s")
    LAST_ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    last_acked_seq: int
    heartbeat_interval_s: int
    def __init__(self, last_acked_seq: _Optional[int] = ..., heartbeat_interval_s: _Optional[int] = ...) -> None: ...

class OutboxEvent(_message.Message):
    __slots__ = ("seq", "ts", "telemetry", "state", "device_event", "alert", "command_result", "device", "room")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_EVENT_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ROOM_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts: _timestamp_pb2.Timestamp
    telemetry: _common_pb2.TelemetryPoint
    state: _common_pb2.ReportedState
    device_event: _common_pb2.DeviceEvent
    alert: _common_pb2.Alert
    command_result: _common_pb2.CommandResult
    device: _common_pb2.Device
    room: _common_pb2.Room
    def __init__(self, seq: _Optional[int] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., telemetry: _Optional[_Union[_common_pb2.TelemetryPoint, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.ReportedState, _Mapping]] = ..., device_event: _Optional[_Union[_common_pb2.DeviceEvent, _Mapping]] = ..., alert: _Optional[_Union[_common_pb2.Alert, _Mapping]] = ..., command_result: _Optional[_Union[_common_pb2.CommandResult, _Mapping]] = ..., device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ..., room: _Optional[_Union[_common_pb2.Room, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[OutboxEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[OutboxEvent, _Mapping]]] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class RemoteCommand(_message.Message):
    __slots__ = ("command", "requested_by", "timeout_ms")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    command: _common_pb2.Command
    requested_by: str
    timeout_ms: int
    def __init__(self, command: _Optional[_Union[_common_pb2.Command, _Mapping]] = ..., requested_by: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class RemoteCommandResult(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.CommandResult
    def __init__(self, result: _Optional[_Union[_common_pb2.CommandResult, _Mapping]] = ...) -> None: ...

class AlertAcknowledgement(_message.Message):
    __slots__ = ("alert_id", "acknowledged_by", "note", "acknowledged_at")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    acknowledged_by: str
    note: str
    acknowledged_at: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., acknowledged_by: _Optional[str] = ..., note: _Optional[str] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("request_id", "rooms", "devices", "states", "alerts", "outbox_seq")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_SEQ_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    rooms: _containers.RepeatedCompositeFieldContainer[_common_pb2.Room]
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    states: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReportedState]
    alerts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Alert]
    outbox_seq: int
    def __init__(self, request_id: _Optional[str] = ..., rooms: _Optional[_Iterable[_Union[_common_pb2.Room, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.ReportedState, _Mapping]]] = ..., alerts: _Optional[_Iterable[_Union[_common_pb2.Alert, _Mapping]]] = ..., outbox_seq: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    fatal: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...
