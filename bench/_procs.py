"""Process plumbing shared by the benchmarks that run the relay and gateways as processes
of their own (remote_command, catchup)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from _pg import PG_ADMIN


def bytecode_cached(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child process whose sources are compiled once into a cache of our own
    instead of at every start, without writing into the source tree."""
    out = dict(env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    out.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "bellhop-bench-pycache")
    )
    return out


async def pg_backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving one database (of this run alone)."""
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1",
            database_url.rsplit("/", 1)[1],
            timeout=5,
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]
