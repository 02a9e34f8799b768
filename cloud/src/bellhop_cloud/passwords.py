"""Password hashing with argon2id (memory-hard), off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bellhop_cloud.config import RelayConfig

MIN_PASSWORD_LENGTH = 10
# Hashing cost grows with input; a cap stops a huge password from being a DoS.
MAX_PASSWORD_LENGTH = 256


class Passwords:
    """Hashes and verifies passwords; each call runs in a worker thread."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Verifying against this when the account does not exist keeps the
        # response time of "no such user" equal to "wrong password".
        self._decoy = self._hasher.hash("bellhop-decoy-password")

    @classmethod
    def from_config(cls, config: RelayConfig) -> Passwords:
        return cls(
            time_cost=config.password_time_cost,
            memory_kib=config.password_memory_kib,
            parallelism=config.password_parallelism,
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; a None hash burns the same time and fails."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(stored_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored_hash)
