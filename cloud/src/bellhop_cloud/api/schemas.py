"""Request and response bodies of the REST API (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

from bellhop_cloud.audit import ActorType, AuditAction
from bellhop_cloud.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from bellhop_cloud.rbac.permissions import Role

Password = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
Name = Field(min_length=1, max_length=200)
Opaque = Field(min_length=1, max_length=2048)


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable and meant for programs."""

    type: str = Field(examples=["urn:bellhop:problem:not_found"])
    title: str
    status: int
    code: str = Field(examples=["not_found"])
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field errors of an invalid_request problem"
    )


# Accounts


class RegisterRequest(BaseModel):
    model_config = _examples(
        {"email": "ana@example.com", "password": "correct horse battery", "display_name": "Ana"}
    )
    email: EmailStr
    password: str = Password
    display_name: str = Name


class LoginRequest(BaseModel):
    model_config = _examples({"email": "ana@example.com", "password": "correct horse battery"})
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RefreshRequest(BaseModel):
    model_config = _examples({"refresh_token": "bhr_..."})
    refresh_token: str = Opaque


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="one-time: use it once, keep the new one")
    refresh_expires_in: int


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    created_at: datetime


class ProfileUpdate(BaseModel):
    model_config = _examples({"display_name": "Ana P."})
    display_name: str = Name


class PasswordChange(BaseModel):
    model_config = _examples(
        {"current_password": "correct horse battery", "new_password": "staple gun lighthouse"}
    )
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Password


# Organisations and grants


class OrgCreate(BaseModel):
    model_config = _examples({"name": "Seaside Hotels"})
    name: str = Name


class OrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    role: Role | None = Field(description="your organisation-wide role, if any")


class MemberOut(BaseModel):
    user_id: str
    email: str
    display_name: str
    role: Role | None = Field(description="best active role; null when every grant expired")


class GrantCreate(BaseModel):
    model_config = _examples(
        {"email": "contractor@example.com", "role": "staff", "hotel_id": None},
    )
    email: EmailStr
    role: Role
    hotel_id: str | None = Field(default=None, max_length=40, description="null: every hotel")
    rooms: list[str] | None = Field(
        default=None, min_length=1, max_length=1000, description="limit to these rooms"
    )
    expires_at: AwareDatetime | None = Field(default=None, description="grant ends then")

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        # Stored in UTC: an offset may carry year 9999 past the range of a datetime.
        try:
            return moment.astimezone(UTC) if moment is not None else None
        except OverflowError as exc:
            msg = "outside the range of times this API stores"
            raise ValueError(msg) from exc

    @field_validator("rooms")
    @classmethod
    def _room_ids(cls, rooms: list[str] | None) -> list[str] | None:
        if rooms is not None and any(not 0 < len(r) <= 64 for r in rooms):
            msg = "room ids are 1 to 64 characters"
            raise ValueError(msg)
        return rooms


class GrantOut(BaseModel):
    id: str
    user_id: str
    email: str
    role: Role
    hotel_id: str | None
    rooms: list[str] | None
    expires_at: datetime | None
    active: bool
    granted_by: str | None
    created_at: datetime


# Hotels, rooms, devices


class HotelCreate(BaseModel):
    model_config = _examples({"name": "Seaside Lisbon", "timezone": "Europe/Lisbon"})
    name: str = Name
    timezone: str = Field(default="UTC", max_length=64)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = "unknown IANA time zone"
            raise ValueError(msg) from exc
        return zone


class HotelOut(BaseModel):
    id: str
    org_id: str
    name: str
    timezone: str
    created_at: datetime
    last_seen: datetime | None
    stale: bool


class RoomOut(BaseModel):
    room_id: str
    name: str
    floor: int | None
    last_seen: datetime | None
    stale: bool


class RoomPage(BaseModel):
    items: list[RoomOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class DeviceOut(BaseModel):
    device_id: str
    room_id: str | None
    kind: str
    firmware: str | None
    online: bool
    state: dict[str, Any]
    last_seen: datetime | None
    stale: bool


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


# Gateways


class EnrolmentTokenCreate(BaseModel):
    model_config = _examples({"ttl_seconds": 3600})
    ttl_seconds: int | None = Field(default=None, ge=60, le=7 * 86400)


class EnrolmentTokenOut(BaseModel):
    id: str
    hotel_id: str
    token: str = Field(description="shown once; give it to the gateway out of band")
    expires_at: datetime


class EnrolRequest(BaseModel):
    model_config = _examples(
        {
            "token": "bhe_...",
            "public_key": "base64url of the 32-byte Ed25519 public key",
            "signature": "base64url Ed25519 signature of 'bellhop-enrol-v1\\0' + token",
            "name": "lisbon-gw-1",
        }
    )
    token: str = Opaque
    public_key: str = Field(min_length=1, max_length=100)
    signature: str = Field(min_length=1, max_length=200)
    name: str = Name


class GatewayOut(BaseModel):
    id: str
    org_id: str
    hotel_id: str
    name: str
    public_key: str = Field(description="base64url, 32-byte Ed25519")
    enrolled_at: datetime
    revoked_at: datetime | None
    active: bool
    last_seen: datetime | None
    stale: bool


class EnrolledOut(GatewayOut):
    bridge_url: str = Field(description="where the gateway opens its bridge, ws(s)://…/v1/bridge")


# Audit and health


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_type: ActorType
    actor_id: str | None
    action: AuditAction
    target_type: str | None
    target_id: str | None
    address: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None = Field(description="pass as `before` for older entries")


class Health(BaseModel):
    status: Literal["ok"]


class InfluxLagOut(BaseModel):
    """How far InfluxDB is behind what this relay applied (docs/influx.md)."""

    points_behind: int = Field(description="applied points and events not yet accepted")
    seconds_behind: float = Field(description="age of the oldest of them; 0 when none")
    written: int = Field(description="accepted by InfluxDB, in total")
    lost: int = Field(description="never reached InfluxDB (deleted first, or refused)")
    running: bool = Field(description="this node runs the sink (one node at a time does)")


class Readiness(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    influx: InfluxLagOut | None = Field(
        default=None, description="the InfluxDB sink's lag; absent while it is off"
    )
