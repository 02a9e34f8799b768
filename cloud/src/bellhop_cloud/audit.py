"""Audit log: who did what, kept per organisation and read by its admins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import audit_log
from bellhop_cloud.db.store import utcnow


class AuditAction(StrEnum):
    """Stable names; the bridge issue records the command and alert actions."""

    ACCOUNT_REGISTERED = "account.registered"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_THROTTLED = "login.throttled"
    LOGOUT = "logout"
    REFRESH_REUSED = "refresh.reused"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105
    ORG_CREATED = "org.created"
    HOTEL_CREATED = "hotel.created"
    GRANT_CREATED = "grant.created"
    GRANT_REVOKED = "grant.revoked"
    MEMBER_REMOVED = "member.removed"
    ENROLMENT_TOKEN_CREATED = "enrolment_token.created"  # noqa: S105
    GATEWAY_ENROLLED = "gateway.enrolled"
    GATEWAY_REVOKED = "gateway.revoked"
    COMMAND_SENT = "command.sent"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    DESIRED_SET = "desired.set"
    NOTIFICATIONS_SET = "notifications.set"


class ActorType(StrEnum):
    USER = "user"
    GATEWAY = "gateway"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    entry_id: int
    org_id: str | None
    at: datetime
    actor_type: ActorType
    actor_id: str | None
    action: AuditAction
    target_type: str | None
    target_id: str | None
    address: str | None
    detail: dict[str, Any] = field(default_factory=dict)


async def record(
    conn: AsyncConnection,
    action: AuditAction,
    *,
    orgs: Iterable[str | None],
    actor_type: ActorType = ActorType.USER,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    address: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry per organisation concerned, inside the caller's transaction.

    Account events (logins, password changes) go to every organisation the
    account belongs to, so each one's admins see them without seeing others'.
    """
    rows = entry_rows(
        action,
        orgs=orgs,
        actor_type=actor_type,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        address=address,
        detail=detail,
    )
    await conn.execute(audit_log.insert(), rows)


def entry_rows(
    action: AuditAction,
    *,
    orgs: Iterable[str | None],
    actor_type: ActorType = ActorType.USER,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    address: str | None = None,
    detail: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The `audit_log` rows `record` writes (for a caller that writes them in a statement
    of its own, with other rows)."""
    now = utcnow()
    return [
        {
            "org_id": org_id,
            "at": now,
            "actor_type": actor_type.value,
            "actor_id": actor_id,
            "action": action.value,
            "target_type": target_type,
            "target_id": target_id,
            "address": address,
            "detail": detail or {},
        }
        # An account in no organisation still leaves a trail for the operator.
        for org_id in dict.fromkeys(orgs) or (None,)
    ]


async def entries(
    conn: AsyncConnection, org_id: str, *, limit: int, before: int | None = None
) -> list[AuditEntry]:
    """Newest first; `before` is the id of the last entry of the previous page."""
    query = sa.select(audit_log).where(audit_log.c.org_id == org_id)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    result = await conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit))
    return [
        AuditEntry(
            entry_id=row.id,
            org_id=row.org_id,
            at=row.at,
            actor_type=ActorType(row.actor_type),
            actor_id=row.actor_id,
            action=AuditAction(row.action),
            target_type=row.target_type,
            target_id=row.target_id,
            address=row.address,
            detail=row.detail,
        )
        for row in result
    ]
