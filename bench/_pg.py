"""A throwaway PostgreSQL database per benchmark run, on the machine's server."""

from __future__ import annotations

import os
import secrets
from typing import Final

import asyncpg  # type: ignore[import-untyped]

PG_ADMIN: Final = os.environ.get("BELLHOP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def create_database(prefix: str) -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(name: str) -> None:
    """Drop it, whoever is still connected."""
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
