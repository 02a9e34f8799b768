"""The relay's tables (SQLAlchemy Core). Migrations in db/migrations must match.

Times are timezone-aware UTC datetimes in Python; SQLite stores them as
naive ISO strings, which sort correctly because every row uses one format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given to the store"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = sa.String(40)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(400), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("password_changed_at", UtcDateTime, nullable=False),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", ID, nullable=False, index=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime),
    sa.Column("revoked_at", UtcDateTime),
)

organisations = sa.Table(
    "organisations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("org_id", ID, sa.ForeignKey("organisations.id"), nullable=False, index=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id")),
    sa.Column("rooms", sa.JSON),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("granted_by", ID, sa.ForeignKey("users.id")),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

hotels = sa.Table(
    "hotels",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("org_id", ID, sa.ForeignKey("organisations.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime),
)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("room_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("floor", sa.Integer),
    sa.Column("last_seen", UtcDateTime),
)


class DeviceJsonHead(sa.sql.expression.ColumnElement[str]):
    """A device as the API's `DeviceOut` JSON, up to the value of `stale`.

    The database keeps it in a stored generated column, so a page of devices
    is read as text, one value per device (db/reads.py); `stale` depends on
    the time of the read and is appended there.
    Byte for byte what orjson makes of `db.reads`' single-device dict (the
    tests compare them on both backends): compact separators, strings
    escaped as orjson does, `state` as stored, times as orjson writes them.
    """

    type = sa.Text()
    inherit_cache = True


# SQLite keeps naive UTC text with microseconds (UtcDateTime): the ISO form
# is a character swap. JSON-typed `state` is stored JSON text.
SQLITE_DEVICE_JSON_HEAD = """'{"device_id":' || json_quote(device_id)
 || ',"room_id":' || json_quote(room_id)
 || ',"kind":' || json_quote(kind)
 || ',"firmware":' || json_quote(firmware)
 || ',"online":' || CASE WHEN online THEN 'true' ELSE 'false' END
 || ',"state":' || state
 || ',"last_seen":' || CASE WHEN last_seen IS NULL THEN 'null'
    ELSE '"' || substr(last_seen, 1, 10) || 'T' || substr(last_seen, 12) || 'Z"' END
 || ',"stale":'"""

# to_json and to_char are only STABLE (some of their inputs depend on
# settings), which a generated column refuses; the immutable wrappers for
# text and for this fixed time format are created by migration 0002.
POSTGRES_DEVICE_JSON_HEAD = """'{"device_id":' || bellhop_json_text(device_id)
 || ',"room_id":' || bellhop_json_text(room_id)
 || ',"kind":' || bellhop_json_text(kind)
 || ',"firmware":' || bellhop_json_text(firmware)
 || ',"online":' || CASE WHEN online THEN 'true' ELSE 'false' END
 || ',"state":' || state::text
 || ',"last_seen":' || bellhop_json_utc(last_seen)
 || ',"stale":'"""


@compiles(DeviceJsonHead, "sqlite")
def _sqlite_json_head(element: DeviceJsonHead, compiler: SQLCompiler, **kw: Any) -> str:
    return SQLITE_DEVICE_JSON_HEAD


@compiles(DeviceJsonHead, "postgresql")
def _postgres_json_head(element: DeviceJsonHead, compiler: SQLCompiler, **kw: Any) -> str:
    return POSTGRES_DEVICE_JSON_HEAD


devices = sa.Table(
    "devices",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("room_id", sa.String(64)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("firmware", sa.String(64)),
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("last_seen", UtcDateTime),
    # Written by the database itself from the columns above; see DeviceJsonHead.
    sa.Column("json_head", sa.Text, sa.Computed(DeviceJsonHead(), persisted=True), nullable=False),
)

enrolment_tokens = sa.Table(
    "enrolment_tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("org_id", ID, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False, index=True),
    sa.Column("created_by", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime),
    sa.Column("gateway_id", ID),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("org_id", ID, sa.ForeignKey("organisations.id"), nullable=False),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("enrolled_at", UtcDateTime, nullable=False),
    sa.Column("enrolment_token_id", ID, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("revoked_by", ID, sa.ForeignKey("users.id")),
    sa.Column("last_seen", UtcDateTime),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("org_id", ID, index=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", ID),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32)),
    sa.Column("target_id", sa.String(64)),
    sa.Column("address", sa.String(64)),
    sa.Column("detail", sa.JSON, nullable=False),
)

# -- what the bridge brings (migration 0003) ------------------------------------------
# Times the edge measured are Unix milliseconds (BIGINT), as on the wire.
MILLIS = sa.BigInteger()

# One row per gateway: where each bridge lane stands, and what its edge still holds.
gateway_links = sa.Table(
    "gateway_links",
    metadata,
    sa.Column("gateway_id", ID, sa.ForeignKey("gateways.id"), primary_key=True),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False, index=True),
    sa.Column("last_bulk_seq", sa.BigInteger, nullable=False),
    sa.Column("last_priority_seq", sa.BigInteger, nullable=False),
    sa.Column("connected", sa.Boolean, nullable=False),
    sa.Column("connected_at", UtcDateTime),
    sa.Column("disconnected_at", UtcDateTime),
    sa.Column("close_reason", sa.String(64)),
    sa.Column("last_heard_at", UtcDateTime),
    sa.Column("backlog_events", sa.BigInteger, nullable=False),
    sa.Column("oldest_unsent_ms", MILLIS),
    sa.Column("gap_points", sa.BigInteger, nullable=False),
    sa.Column("gap_events", sa.BigInteger, nullable=False),
)

# No foreign key to hotels: a check per point on the hottest insert, and the hotel
# is fixed by the gateway's authenticated link, never by what a frame says.
telemetry = sa.Table(
    "telemetry",
    metadata,
    sa.Column("hotel_id", ID, primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("ts", MILLIS, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    # On SQLite the key is the table: one B-tree to write per point, not a table and an
    # index, and a device's history is stored in the order it is read.
    sqlite_with_rowid=False,
)

device_events = sa.Table(
    "device_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("ts", MILLIS, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_device_events_hotel_id_ts", "hotel_id", "ts"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    # Keyed by hotel as well: ids come from the edge, and one hotel's gateway
    # must never reach another hotel's rows by reusing an id.
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("alert_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("room_id", sa.String(64)),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("raised_at", MILLIS, nullable=False),
    sa.Column("acknowledged_at", MILLIS),
    sa.Column("acknowledged_by", sa.String(200)),
    sa.Column("note", sa.String(1000)),
    sa.Column("cleared_at", MILLIS),
    sa.Index("ix_alerts_hotel_id_raised_at", "hotel_id", "raised_at"),
)

# What staff asked each device to be (the edge decides; the relay mirrors it).
desired_states = sa.Table(
    "desired_states",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("values", sa.JSON, nullable=False),
    sa.Column("updated_at", MILLIS, nullable=False),
    sa.Column("updated_by", sa.String(200)),
    # Who set each field, when, and whether on site as a safety override; how the last
    # change made through the cloud merged (docs/conflicts.md).
    sa.Column("fields", sa.JSON),
    sa.Column("outcomes", sa.JSON),
    sa.Column("change_id", sa.String(80)),
)

command_results = sa.Table(
    "command_results",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("command_id", sa.String(64), primary_key=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.String(500)),
    sa.Column("completed_at", MILLIS),
)

# What the relay must tell a hotel's gateway (remote commands, alert acknowledgements),
# kept until the gateway has it and it is done, or until it expires (docs/remote-control.md).
downlink = sa.Table(
    "downlink",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("item_id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("device_id", sa.String(64)),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("requested_by", ID, nullable=False),
    sa.Column("requested_at", MILLIS, nullable=False),
    sa.Column("expires_at", MILLIS, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("sent_at", MILLIS),
    sa.Column("sends", sa.Integer, nullable=False),
    sa.Index("ix_downlink_state_hotel_id", "state", "hotel_id"),
)

# What an edge had to drop before it could send it: never a silent hole.
sync_gaps = sa.Table(
    "sync_gaps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False, index=True),
    sa.Column("gateway_id", ID, nullable=False),
    sa.Column("lane", sa.SmallInteger, nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("telemetry_points", sa.BigInteger, nullable=False),
    sa.Column("other_events", sa.BigInteger, nullable=False),
    sa.Column("oldest_ms", MILLIS),
    sa.Column("newest_ms", MILLIS),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
)

# Gateways the relay asks for a snapshot at their next connection (migration 0005):
# written by `bellhop cloud restore`, because a restored database may be behind
# what the edges know; a row goes when its gateway's snapshot is applied.
bridge_resyncs = sa.Table(
    "bridge_resyncs",
    metadata,
    sa.Column("gateway_id", ID, sa.ForeignKey("gateways.id"), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
)

# -- the InfluxDB sink (migration 0006, bellhop_cloud/influx.py) ----------------------
# What was applied and is not in InfluxDB yet: one row per telemetry point or device
# event, appended by triggers on `telemetry` and `device_events` while the sink is on
# (so the bridge's statements stay as they are), deleted once InfluxDB accepted it.
influx_journal = sa.Table(
    "influx_journal",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hotel_id", ID, nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(32)),  # a point's; NULL for a device event
    sa.Column("ts", MILLIS, nullable=False),
    sa.Column("event_id", sa.BigInteger),  # a device event's row; NULL for a point
    sa.Column("applied_ms", MILLIS, nullable=False),
)

# One row: whether the triggers journal, and what the sink wrote and lost so far.
influx_sink = sa.Table(
    "influx_sink",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("written", sa.BigInteger, nullable=False),
    sa.Column("lost", sa.BigInteger, nullable=False),
)

# -- alert notifications (migration 0007, bellhop_cloud/notify) -----------------------
# Each hotel's policy: who is told about which alerts, through which channels, and when
# to escalate. One JSON document, replaced whole; it holds the channels' secrets (Apprise
# URLs), which the API never shows.
notify_policies = sa.Table(
    "notify_policies",
    metadata,
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), primary_key=True),
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", ID),
)

# One row per (alert transition, contact, channel), queued in the transaction that
# applies the alert's change: the unique key is what makes a transition notify each
# contact through each channel at most once, however often anything restarts.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hotel_id", ID, sa.ForeignKey("hotels.id"), nullable=False),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("transition", sa.String(16), nullable=False),
    sa.Column("contact_id", sa.String(40), nullable=False),
    sa.Column("channel_id", sa.String(40), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),  # the contact's place in the escalation
    sa.Column("position", sa.Integer, nullable=False),  # the channel's place in its contact's
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("due_ms", MILLIS, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_ms", MILLIS),
    sa.Column("created_ms", MILLIS, nullable=False),
    sa.UniqueConstraint("hotel_id", "alert_id", "transition", "contact_id", "channel_id"),
    sa.Index("ix_notifications_state_due_ms", "state", "due_ms"),
)

# Every send, written before it starts (outcome `sending`) and resolved after it ends.
notify_attempts = sa.Table(
    "notify_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("notification_id", sa.BigInteger, sa.ForeignKey("notifications.id"), nullable=False),
    sa.Column("hotel_id", ID, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started_ms", MILLIS, nullable=False),
    sa.Column("finished_ms", MILLIS),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.String(300)),
    sa.Index("ix_notify_attempts_hotel_id_id", "hotel_id", "id"),
)
