import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_KIND_UNSPECIFIED: _ClassVar[DeviceKind]
    DEVICE_KIND_THERMOSTAT: _ClassVar[DeviceKind]
    DEVICE_KIND_LIGHT: _ClassVar[DeviceKind]
    DEVICE_KIND_DOOR_LOCK: _ClassVar[DeviceKind]
    DEVICE_KIND_DOOR_SENSOR: _ClassVar[DeviceKind]
    DEVICE_KIND_ENVIRONMENT_SENSOR: _ClassVar[DeviceKind]
    DEVICE_KIND_GAS_SENSOR: _ClassVar[DeviceKind]

class Connectivity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTIVITY_UNSPECIFIED: _ClassVar[Connectivity]
    CONNECTIVITY_ONLINE: _ClassVar[Connectivity]
    CONNECTIVITY_OFFLINE: _ClassVar[Connectivity]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_DOOR: _ClassVar[EventKind]
    EVENT_KIND_BREACH: _ClassVar[EventKind]
    EVENT_KIND_GAS: _ClassVar[EventKind]
    EVENT_KIND_BUTTON: _ClassVar[EventKind]
    EVENT_KIND_BATTERY: _ClassVar[EventKind]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_TEMPERATURE_OUT_OF_RANGE: _ClassVar[AlertKind]
    ALERT_KIND_GAS: _ClassVar[AlertKind]
    ALERT_KIND_DOOR_LEFT_OPEN: _ClassVar[AlertKind]
    ALERT_KIND_BREACH: _ClassVar[AlertKind]
    ALERT_KIND_BATTERY_LOW: _ClassVar[AlertKind]
    ALERT_KIND_DEVICE_OFFLINE: _ClassVar[AlertKind]

class AlertSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_SEVERITY_UNSPECIFIED: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_INFO: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_WARNING: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_CRITICAL: _ClassVar[AlertSeverity]

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_RAISED: _ClassVar[AlertState]
    ALERT_STATE_ACKNOWLEDGED: _ClassVar[AlertState]
    ALERT_STATE_CLEARED: _ClassVar[AlertState]

class CommandStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_STATUS_UNSPECIFIED: _ClassVar[CommandStatus]
    COMMAND_STATUS_SUCCEEDED: _ClassVar[CommandStatus]
    COMMAND_STATUS_FAILED: _ClassVar[CommandStatus]
    COMMAND_STATUS_TIMED_OUT: _ClassVar[CommandStatus]
    COMMAND_STATUS_EXPIRED: _ClassVar[CommandStatus]
    COMMAND_STATUS_PENDING: _ClassVar[CommandStatus]
DEVICE_KIND_UNSPECIFIED: DeviceKind
DEVICE_KIND_THERMOSTAT: DeviceKind
DEVICE_KIND_LIGHT: DeviceKind
DEVICE_KIND_DOOR_LOCK: DeviceKind
DEVICE_KIND_DOOR_SENSOR: DeviceKind
DEVICE_KIND_ENVIRONMENT_SENSOR: DeviceKind
DEVICE_KIND_GAS_SENSOR: DeviceKind
CONNECTIVITY_UNSPECIFIED: Connectivity
CONNECTIVITY_ONLINE: Connectivity
CONNECTIVITY_OFFLINE: Connectivity
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_DOOR: EventKind
EVENT_KIND_BREACH: EventKind
EVENT_KIND_GAS: EventKind
EVENT_KIND_BUTTON: EventKind
EVENT_KIND_BATTERY: EventKind
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_TEMPERATURE_OUT_OF_RANGE: AlertKind
ALERT_KIND_GAS: AlertKind
ALERT_KIND_DOOR_LEFT_OPEN: AlertKind
ALERT_KIND_BREACH: AlertKind
ALERT_KIND_BATTERY_LOW: AlertKind
ALERT_KIND_DEVICE_OFFLINE: AlertKind
ALERT_SEVERITY_UNSPECIFIED: AlertSeverity
ALERT_SEVERITY_INFO: AlertSeverity
ALERT_SEVERITY_WARNING: AlertSeverity
ALERT_SEVERITY_CRITICAL: AlertSeverity
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_RAISED: AlertState
ALERT_STATE_ACKNOWLEDGED: AlertState
ALERT_STATE_CLEARED: AlertState
COMMAND_STATUS_UNSPECIFIED: CommandStatus
COMMAND_STATUS_SUCCEEDED: CommandStatus
COMMAND_STATUS_FAILED: CommandStatus
COMMAND_STATUS_TIMED_OUT: CommandStatus
COMMAND_STATUS_EXPIRED: CommandStatus
COMMAND_STATUS_PENDING: CommandStatus

class Room(_message.Message):
    __slots__ = ("room_id", "name", "floor")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    name: str
    floor: int
    def __init__(self, room_id: _Optional[str] = ..., name: _Optional[str] = ..., floor: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "room_id", "kind", "registered", "connectivity", "last_seen", "firmware")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    CONNECTIVITY_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    room_id: str
    kind: DeviceKind
    registered: bool
    connectivity: Connectivity
    last_seen: _timestamp_pb2.Timestamp
    firmware: str
    def __init__(self, device_id: _Optional[str] = ..., room_id: _Optional[str] = ..., kind: _Optional[_Union[DeviceKind, str]] = ..., registered: _Optional[bool] = ..., connectivity: _Optional[_Union[Connectivity, str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., firmware: _Optional[str] = ...) -> None: ...

class ReportedState(_message.Message):
    __slots__ = ("device_id", "version", "values", "updated_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    version: int
    values: _struct_pb2.Struct
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., version: _Optional[int] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DesiredState(_message.Message):
    __slots__ = ("device_id", "version", "values", "updated_at", "updated_by")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    version: int
    values: _struct_pb2.Struct
    updated_at: _timestamp_pb2.Timestamp
    updated_by: str
    def __init__(self, device_id: _Optional[str] = ..., version: _Optional[int] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ...) -> None: ...

class TelemetryPoint(_message.Message):
    __slots__ = ("device_id", "metric", "ts", "value")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    metric: str
    ts: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, device_id: _Optional[str] = ..., metric: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class DeviceEvent(_message.Message):
    __slots__ = ("device_id", "kind", "ts", "data")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    kind: EventKind
    ts: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    def __init__(self, device_id: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "kind", "severity", "state", "device_id", "room_id", "message", "raised_at", "acknowledged_at", "acknowledged_by", "note", "cleared_at")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CLEARED_AT_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    severity: AlertSeverity
    state: AlertState
    device_id: str
    room_id: str
    message: str
    raised_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    note: str
    cleared_at: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., severity: _Optional[_Union[AlertSeverity, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., device_id: _Optional[str] = ..., room_id: _Optional[str] = ..., message: _Optional[str] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., note: _Optional[str] = ..., cleared_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "device_id", "name", "params", "expires_at")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    device_id: str
    name: str
    params: _struct_pb2.Struct
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, command_id: _Optional[str] = ..., device_id: _Optional[str] = ..., name: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "device_id", "status", "result", "error", "completed_at")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    device_id: str
    status: CommandStatus
    result: _struct_pb2.Struct
    error: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, command_id: _Optional[str] = ..., device_id: _Optional[str] = ..., status: _Optional[_Union[CommandStatus, str]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
