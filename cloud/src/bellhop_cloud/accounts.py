"""Accounts and sessions: register, login, refresh with rotation, logout, password change.

A session is a family of refresh tokens. Each refresh uses up its token and
issues the next one in the family; presenting a used token again means it
was copied, so the whole family is revoked (RFC 9700, section 4.14.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.auth.roles import load_grants, token_roles
from bellhop_cloud.auth.sessions import Sessions
from bellhop_cloud.auth.tokens import REFRESH_PREFIX, AccessTokens, digest, new_secret
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.schema import grants, refresh_tokens, users
from bellhop_cloud.db.store import Store, new_id, utcnow
from bellhop_cloud.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
)
from bellhop_cloud.metrics import RelayMetrics
from bellhop_cloud.passwords import Passwords
from bellhop_cloud.ratelimit import Limit, RateLimiter


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class Accounts:
    def __init__(
        self,
        config: RelayConfig,
        *,
        store: Store,
        passwords: Passwords,
        tokens: AccessTokens,
        sessions: Sessions,
        limiter: RateLimiter,
        metrics: RelayMetrics,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._passwords = passwords
        self._tokens = tokens
        self._limiter = limiter
        self._metrics = metrics
        self._refresh_ttl = timedelta(seconds=config.refresh_token_ttl_s)
        self._account_limit = Limit(config.login_account_limit, config.login_account_window_s)
        self._address_limit = Limit(config.login_address_limit, config.login_address_window_s)
        self._register_limit = Limit(
            config.register_address_limit, config.register_address_window_s
        )

    async def register(
        self, email: str, password: str, display_name: str, *, address: str | None
    ) -> User:
        # Counted before anything else, so a refused sign-up costs no hash and
        # says nothing about whether the email is taken.
        wait = await self._limiter.hit(f"register:address:{address}", self._register_limit)
        if wait is not None:
            self._metrics.registration_throttled.inc()
            raise RateLimited(wait, "too many sign-ups from this address; try again later")
        password_hash = await self._passwords.hash(password)
        now = utcnow()
        user = User(new_id("usr"), email.lower(), display_name, now)
        try:
            async with self._store.write() as conn:
                await conn.execute(
                    users.insert().values(
                        id=user.user_id,
                        email=user.email,
                        display_name=display_name,
                        password_hash=password_hash,
                        created_at=now,
                        password_changed_at=now,
                    )
                )
                await audit.record(
                    conn,
                    AuditAction.ACCOUNT_REGISTERED,
                    orgs=(),
                    actor_id=user.user_id,
                    target_type="user",
                    target_id=user.user_id,
                    address=address,
                )
        except IntegrityError as exc:
            raise EmailTaken from exc
        return user

    async def login(self, email: str, password: str, *, address: str | None) -> Session:
        email = email.lower()
        account_key = f"login:account:{email}"
        wait = await self._limiter.hit(f"login:address:{address}", self._address_limit)
        if wait is None:
            wait = await self._limiter.blocked(account_key, self._account_limit)
        if wait is not None:
            self._metrics.login_throttled.inc()
            raise RateLimited(wait, "too many login attempts; try again later")
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(users.c.id, users.c.password_hash).where(users.c.email == email)
                )
            ).first()
        stored_hash = row.password_hash if row is not None else None
        if not await self._passwords.verify(stored_hash, password):
            await self._limiter.hit(account_key, self._account_limit)
            self._metrics.auth_failures.labels(reason="invalid_credentials").inc()
            user_id = row.id if row is not None else None
            # This failure may be the one that locks the account: say so once.
            locked = await self._limiter.blocked(account_key, self._account_limit) is not None
            async with self._store.write() as conn:
                orgs = await _orgs_of(conn, user_id) if user_id else []
                # An unknown email is not stored: people type passwords into it.
                await audit.record(
                    conn, AuditAction.LOGIN_FAILED, orgs=orgs, actor_id=user_id, address=address
                )
                if locked and user_id:
                    await audit.record(
                        conn,
                        AuditAction.LOGIN_THROTTLED,
                        orgs=orgs,
                        actor_id=user_id,
                        address=address,
                    )
            raise InvalidCredentials
        assert row is not None
        assert stored_hash is not None
        await self._limiter.reset(account_key)
        new_hash = None
        if self._passwords.needs_rehash(stored_hash):
            new_hash = await self._passwords.hash(password)
        async with self._store.write() as conn:
            if new_hash is not None:
                await conn.execute(
                    users.update().where(users.c.id == row.id).values(password_hash=new_hash)
                )
            session = await self._start_session(conn, row.id, new_id("fam"))
            await audit.record(
                conn,
                AuditAction.LOGIN_SUCCEEDED,
                orgs=await _orgs_of(conn, row.id),
                actor_id=row.id,
                address=address,
            )
        return session

    async def refresh(self, refresh_token: str, *, address: str | None) -> Session:
        """Rotate: use up `refresh_token` and return the next session of its family."""
        now = utcnow()
        reused: tuple[str, str] | None = None
        async with self._store.write() as conn:
            row = (
                await conn.execute(
                    sa.select(refresh_tokens).where(
                        refresh_tokens.c.token_hash == digest(refresh_token)
                    )
                )
            ).first()
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                session = None
            else:
                used = await conn.execute(
                    refresh_tokens.update()
                    .where(
                        refresh_tokens.c.token_hash == row.token_hash,
                        refresh_tokens.c.used_at.is_(None),
                    )
                    .values(used_at=now)
                )
                if used.rowcount == 1:
                    session = await self._start_session(conn, row.user_id, row.family_id)
                else:
                    session = None
                    reused = (row.user_id, row.family_id)
                    await self._revoke_family(conn, row.family_id, now)
                    await audit.record(
                        conn,
                        AuditAction.REFRESH_REUSED,
                        orgs=await _orgs_of(conn, row.user_id),
                        actor_id=row.user_id,
                        address=address,
                        detail={"family_id": row.family_id},
                    )
        if reused is not None:
            self._sessions.ended(reused[1])
            self._metrics.auth_failures.labels(reason="refresh_token_reused").inc()
            raise RefreshTokenReused
        if session is None:
            self._metrics.auth_failures.labels(reason="refresh_token_invalid").inc()
            raise RefreshTokenInvalid
        return session

    async def logout(self, refresh_token: str, *, address: str | None) -> None:
        """Revoke the session the token belongs to; unknown tokens are ignored."""
        async with self._store.write() as conn:
            row = (
                await conn.execute(
                    sa.select(refresh_tokens.c.user_id, refresh_tokens.c.family_id).where(
                        refresh_tokens.c.token_hash == digest(refresh_token)
                    )
                )
            ).first()
            if row is None:
                return
            await self._revoke_family(conn, row.family_id, utcnow())
            await audit.record(
                conn,
                AuditAction.LOGOUT,
                orgs=await _orgs_of(conn, row.user_id),
                actor_id=row.user_id,
                address=address,
            )
        self._sessions.ended(row.family_id)

    async def profile(self, user_id: str) -> User:
        async with self._store.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise InvalidToken("the account no longer exists")
        return User(row.id, row.email, row.display_name, row.created_at)

    async def rename(self, user_id: str, display_name: str) -> User:
        async with self._store.write() as conn:
            await conn.execute(
                users.update().where(users.c.id == user_id).values(display_name=display_name)
            )
        return await self.profile(user_id)

    async def change_password(
        self, user_id: str, current: str, new: str, *, address: str | None
    ) -> Session:
        """Set a new password, end every other session and start a fresh one."""
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    sa.select(users.c.email, users.c.password_hash).where(users.c.id == user_id)
                )
            ).first()
        if row is None:
            raise InvalidToken("the account no longer exists")
        account_key = f"login:account:{row.email}"
        wait = await self._limiter.blocked(account_key, self._account_limit)
        if wait is not None:
            raise RateLimited(wait, "too many wrong passwords; try again later")
        if not await self._passwords.verify(row.password_hash, current):
            await self._limiter.hit(account_key, self._account_limit)
            raise Forbidden("current password is wrong")
        new_hash = await self._passwords.hash(new)
        now = utcnow()
        async with self._store.write() as conn:
            await conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(password_hash=new_hash, password_changed_at=now)
            )
            await conn.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            session = await self._start_session(conn, user_id, new_id("fam"))
            await audit.record(
                conn,
                AuditAction.PASSWORD_CHANGED,
                orgs=await _orgs_of(conn, user_id),
                actor_id=user_id,
                address=address,
            )
        self._sessions.ended_for_user(user_id)
        return session

    async def _start_session(self, conn: AsyncConnection, user_id: str, family: str) -> Session:
        now = utcnow()
        refresh_token = new_secret(REFRESH_PREFIX)
        await conn.execute(
            refresh_tokens.insert().values(
                token_hash=digest(refresh_token),
                family_id=family,
                user_id=user_id,
                issued_at=now,
                expires_at=now + self._refresh_ttl,
            )
        )
        # The roles a gateway checks offline, as the grants stand now (auth/roles.py).
        roles = token_roles(await load_grants(conn, user_id), now)
        access = self._tokens.issue(user_id, family, roles=roles)
        return Session(
            user_id=user_id,
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=refresh_token,
            refresh_expires_in=int(self._refresh_ttl.total_seconds()),
        )

    @staticmethod
    async def _revoke_family(conn: AsyncConnection, family_id: str, now: datetime) -> None:
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def _orgs_of(conn: AsyncConnection, user_id: str) -> list[str]:
    result = await conn.execute(
        sa.select(grants.c.org_id).where(grants.c.user_id == user_id).distinct()
    )
    return list(result.scalars())
