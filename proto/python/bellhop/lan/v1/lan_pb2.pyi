import datetime

from bellhop.common.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListRoomsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoomsResponse(_message.Message):
    __slots__ = ("rooms",)
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[_common_pb2.Room]
    def __init__(self, rooms: _Optional[_Iterable[_Union[_common_pb2.Room, _Mapping]]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("room_id", "include_unknown")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    include_unknown: bool
    def __init__(self, room_id: _Optional[str] = ..., include_unknown: _Optional[bool] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[_common_pb2.Device, _Mapping]]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class GetDeviceResponse(_message.Message):
    __slots__ = ("device", "reported", "desired", "delta")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    device: _common_pb2.Device
    reported: _common_pb2.ReportedState
    desired: _common_pb2.DesiredState
    delta: _struct_pb2.Struct
    def __init__(self, device: _Optional[_Union[_common_pb2.Device, _Mapping]] = ..., reported: _Optional[_Union[_common_pb2.ReportedState, _Mapping]] = ..., desired: _Optional[_Union[_common_pb2.DesiredState, _Mapping]] = ..., delta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SetDesiredStateRequest(_message.Message):
    __slots__ = ("device_id", "values", "expected_version")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    values: _struct_pb2.Struct
    expected_version: int
    def __init__(self, device_id: _Optional[str] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetDesiredStateResponse(_message.Message):
    __slots__ = ("desired",)
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    desired: _common_pb2.DesiredState
    def __init__(self, desired: _Optional[_Union[_common_pb2.DesiredState, _Mapping]] = ...) -> None: ...

class SendCommandRequest(_message.Message):
    __slots__ = ("device_id", "name", "params", "command_id", "ttl", "timeout")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    params: _struct_pb2.Struct
    command_id: str
    ttl: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., command_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SendCommandResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.CommandResult
    def __init__(self, result: _Optional[_Union[_common_pb2.CommandResult, _Mapping]] = ...) -> None: ...

class FleetTarget(_message.Message):
    __slots__ = ("room_ids", "floors", "kinds", "device_ids", "all_devices")
    ROOM_IDS_FIELD_NUMBER: _ClassVar[int]
    FLOORS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_DEVICES_FIELD_NUMBER: _ClassVar[int]
    room_ids: _containers.RepeatedScalarFieldContainer[str]
    floors: _containers.RepeatedScalarFieldContainer[int]
    kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.DeviceKind]
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    all_devices: bool
    def __init__(self, room_ids: _Optional[_Iterable[str]] = ..., floors: _Optional[_Iterable[int]] = ..., kinds: _Optional[_Iterable[_Union[_common_pb2.DeviceKind, str]]] = ..., device_ids: _Optional[_Iterable[str]] = ..., all_devices: _Optional[bool] = ...) -> None: ...

class SendFleetCommandRequest(_message.Message):
    __slots__ = ("target", "name", "params", "fleet_id", "ttl", "timeout", "max_in_flight")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FLEET_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    target: FleetTarget
    name: str
    params: _struct_pb2.Struct
    fleet_id: str
    ttl: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    max_in_flight: int
    def __init__(self, target: _Optional[_Union[FleetTarget, _Mapping]] = ..., name: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., fleet_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class SendFleetCommandResponse(_message.Message):
    __slots__ = ("fleet_id", "targeted", "succeeded", "failed", "timed_out", "expired", "results")
    FLEET_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    fleet_id: str
    targeted: int
    succeeded: int
    failed: int
    timed_out: int
    expired: int
    results: _containers.RepeatedCompositeFieldContainer[_common_pb2.CommandResult]
    def __init__(self, fleet_id: _Optional[str] = ..., targeted: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., timed_out: _Optional[int] = ..., expired: _Optional[int] = ..., results: _Optional[_Iterable[_Union[_common_pb2.CommandResult, _Mapping]]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("states", "room_id", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.AlertState]
    room_id: str
    limit: int
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.AlertState, str]]] = ..., room_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[_common_pb2.Alert, _Mapping]]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: _common_pb2.Alert
    def __init__(self, alert: _Optional[_Union[_common_pb2.Alert, _Mapping]] = ...) -> None: ...

class QueryTelemetryRequest(_message.Message):
    __slots__ = ("device_id", "metric", "start", "end", "limit")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    metric: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, device_id: _Optional[str] = ..., metric: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class QueryTelemetryResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_common_pb2.TelemetryPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[_common_pb2.TelemetryPoint, _Mapping]]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("room_id",)
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    def __init__(self, room_id: _Optional[str] = ...) -> None: ...

class DeviceStatusChange(_message.Message):
    __slots__ = ("device_id", "connectivity", "ts")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTIVITY_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    connectivity: _common_pb2.Connectivity
    ts: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., connectivity: _Optional[_Union[_common_pb2.Connectivity, str]] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("telemetry", "state", "device_event", "alert", "command_result", "status")
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_EVENT_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    telemetry: _common_pb2.TelemetryPoint
    state: _common_pb2.ReportedState
    device_event: _common_pb2.DeviceEvent
    alert: _common_pb2.Alert
    command_result: _common_pb2.CommandResult
    status: DeviceStatusChange
    def __init__(self, telemetry: _Optional[_Union[_common_pb2.TelemetryPoint, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.ReportedState, _Mapping]] = ..., device_event: _Optional[_Union[_common_pb2.DeviceEvent, _Mapping]] = ..., alert: _Optional[_Union[_common_pb2.Alert, _Mapping]] = ..., command_result: _Optional[_Union[_common_pb2.CommandResult, _Mapping]] = ..., status: _Optional[_Union[DeviceStatusChange, _Mapping]] = ...) -> None: ...

class GetGatewayStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGatewayStatusResponse(_message.Message):
    __slots__ = ("hotel_id", "broker_connected", "devices_online", "devices_total", "rejected", "accepted", "started_at")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    HOTEL_ID_FIELD_NUMBER: _ClassVar[int]
    BROKER_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DEVICES_ONLINE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    hotel_id: str
    broker_connected: bool
    devices_online: int
    devices_total: int
    rejected: _containers.ScalarMap[str, int]
    accepted: int
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, hotel_id: _Optional[str] = ..., broker_connected: _Optional[bool] = ..., devices_online: _Optional[int] = ..., devices_total: _Optional[int] = ..., rejected: _Optional[_Mapping[str, int]] = ..., accepted: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
