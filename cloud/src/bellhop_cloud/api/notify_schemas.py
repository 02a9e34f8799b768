"""Request and response bodies of the notification routes (docs/notifications.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from bellhop_bridge.notify_channels import ALLOWED_SCHEMES, MAX_URL
from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal[
    "temperature_out_of_range", "gas", "door_left_open", "breach", "battery_low", "device_offline"
]
Severity = Literal["info", "warning", "critical"]
CONTACT_ID = r"^ct_[0-9a-f]{16}$"
CHANNEL_ID = r"^ch_[0-9a-f]{16}$"
# The scheme is checked here; that Apprise accepts the rest is checked by the route.
# No white space or control characters (the boundary refuses those anyway).
URL_PATTERN = r"^(" + "|".join(sorted(ALLOWED_SCHEMES)) + r")://[^\s\u0000-\u001f\u007f-\u009f]+$"
MAX_CONTACTS = 20
MAX_CHANNELS = 5
WEEK_S = 7 * 86_400

_EXAMPLE: dict[str, Any] = {
    "contacts": [
        {
            "name": "Night manager",
            "kinds": ["breach", "gas"],
            "severities": ["critical"],
            "escalate_after_s": 600,
            "channels": [
                {"url": "json://hooks.example.com/bellhop"},
                {"url": "mailto://bellhop:secret@mail.example.com?to=night@example.com"},
            ],
        },
        {"name": "Owner", "escalate_after_s": 900, "channels": [{"url": "tgram://123:abc/456"}]},
    ]
}


class ChannelIn(BaseModel):
    """A channel: `url` to add one or change its URL; `id` alone keeps the stored URL."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, pattern=CHANNEL_ID)
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL, pattern=URL_PATTERN)

    @model_validator(mode="after")
    def _either(self) -> Self:
        if self.id is None and self.url is None:
            raise ValueError("give url, or the id of a channel to keep")
        return self


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, pattern=CONTACT_ID, description="kept if given")
    name: str = Field(min_length=1, max_length=200)
    kinds: list[Kind] = Field(default_factory=list, max_length=16, description="empty: all")
    severities: list[Severity] = Field(default_factory=list, max_length=3, description="empty: all")
    escalate_after_s: int = Field(
        default=600,
        ge=1,
        le=WEEK_S,
        description="not acknowledged this long after this contact is due: the next one is told",
    )
    channels: list[ChannelIn] = Field(min_length=1, max_length=MAX_CHANNELS)


class PolicyIn(BaseModel):
    """Who is told about which alerts, in escalation order, and through which channels."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})
    contacts: list[ContactIn] = Field(max_length=MAX_CONTACTS)


class ChannelOut(BaseModel):
    id: str
    scheme: str
    url: str = Field(description="credentials, tokens and paths masked as ***")


class ContactOut(BaseModel):
    id: str
    name: str
    kinds: list[str]
    severities: list[str]
    escalate_after_s: int
    channels: list[ChannelOut]


class PolicyOut(BaseModel):
    hotel_id: str
    version: int = Field(description="0: never set")
    updated_at: datetime | None
    contacts: list[ContactOut]


class AttemptOut(BaseModel):
    id: int
    notification_id: int
    alert_id: str
    transition: str
    contact_id: str
    channel_id: str
    number: int = Field(description="the attempt's number on this channel, from 1")
    outcome: Literal["sending", "sent", "failed", "unknown"]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    state: str = Field(description="the notification's state now")


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
