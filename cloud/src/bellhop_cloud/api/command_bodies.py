"""The bodies of remote control's REST calls (api/routes_commands.py): strict JSON, exact
numbers, command ids that never hold a `:` (docs/remote-control.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

from bellhop_cloud.bridge.items import SAFE_INTEGER

MAX_FLEET = 5000

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# No `:` in a command or fleet id: ids with one are the relay's own downlink items
# ("ack:<alert id>", "desired:<id>"), which a command id must never equal (the edge's
# LAN API has the same rule; docs/remote-control.md).
CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
FleetId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
RoomId = Annotated[str, StringConstraints(pattern=r"^[^\s\x00-\x1f\x7f-\x9f]{1,64}$")]
Text = Annotated[str, StringConstraints(max_length=200)]


def _exact(value: object) -> object:
    """A number is kept only within +/-2**53, where a JSON number (and the bridge's
    double) holds every integer exactly: past it, an integer would arrive rounded to
    another number (a device takes none so large: the edge's limit is +/-1e9)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if abs(value) > SAFE_INTEGER:
        raise ValueError(f"a number must be within +/-2**53 ({SAFE_INTEGER})")
    return value


_BOUNDED = {"minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER}
Value = Annotated[
    StrictBool | StrictInt | Annotated[float, Field(allow_inf_nan=False)] | Text | None,
    AfterValidator(_exact),
    # One bound stated on both kinds of number: JSON does not tell 2**70 from 2.0e21.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "integer", **_BOUNDED},
                {"type": "number", **_BOUNDED},
                {"type": "string", "maxLength": 200},
                {"type": "null"},
            ]
        }
    ),
]


def whole(value: object) -> object:
    """A whole JSON number is an integer however it is written (2.0 is 2, as JSON
    Schema says); anything else goes on to be refused."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Floor = Annotated[int, Field(ge=-100, le=1000), BeforeValidator(whole)]


class SendIn(BaseModel):
    # Strict: a JSON body's types are what they say ("10" is not a number, nor true).
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    params: dict[Name, Value] = Field(
        default_factory=dict,
        max_length=32,
        # Keys are names: said so in the schema too, not only by `patternProperties`.
        json_schema_extra={"additionalProperties": False},
    )
    mode: Literal["wait", "queue"] = Field(
        default="wait", description="wait for the result, or queue it (202) and poll"
    )
    timeout_s: float = Field(
        default=10.0,
        ge=0.1,
        le=300,
        description="how long the device may take to answer (at least 0.1 s)",
    )
    ttl_s: float = Field(
        default=60.0, ge=1, le=7 * 86_400, description="never delivered after this long"
    )


class CommandIn(SendIn):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"name": "set_setpoint", "params": {"setpoint_c": 21.5}, "command_id": "c-1"}
            ]
        },
    )

    command_id: CommandId | None = Field(
        default=None, description="the idempotency key on every path; default: a new one"
    )


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    room_ids: list[RoomId] = Field(default_factory=list, max_length=2000)
    floors: list[Floor] = Field(default_factory=list, max_length=200)
    kinds: list[Name] = Field(default_factory=list, max_length=20)
    device_ids: list[DeviceId] = Field(default_factory=list, max_length=MAX_FLEET)
    all_devices: bool = False


class FleetIn(SendIn):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "set_light",
                    "params": {"on": False},
                    "fleet_id": "night",
                    "target": {"floors": [1]},
                    "mode": "queue",
                }
            ]
        },
    )

    fleet_id: FleetId | None = Field(
        default=None, description="each device's command id derives from it; retries dedup"
    )
    target: TargetIn


class CommandOut(BaseModel):
    command_id: str
    device_id: str
    name: str
    state: str = Field(description="queued, sent, succeeded, failed, timed_out or expired")
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    completed_at: datetime | None


class FleetOut(BaseModel):
    fleet_id: str
    targeted: int
    states: dict[str, int]
    commands: list[CommandOut]


class AckIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"note": "seen"}]}
    )

    note: str = Field(default="", max_length=500)


class AckOut(BaseModel):
    alert_id: str
    outcome: Literal["acknowledged", "queued", "already_acknowledged", "already_cleared"]
