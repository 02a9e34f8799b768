"""`bellhop cloud run` as a real process, for the bridge's fault tests (kill -9, SIGTERM).

    relay = RelayProcess(tmp_path / "relay")               # SQLite file, free ports
    relay.start()                                           # returns once /readyz answers
    tenant = relay.tenant()                                 # owner, org, hotel (REST)
    enrol_gateway(config, relay, tenant.enrolment_token())  # the real `bellhop edge enrol`
    ...
    relay.kill()        # SIGKILL
    relay.stop()        # SIGTERM, returns the exit status

The relay runs on a SQLite file of its own, or on a PostgreSQL database made
for the test (`postgres_database`, dropped afterwards). It listens on free
loopback ports, the REST API and the bridge endpoint each on its own, and
keeps them over restarts, so a gateway that was enrolled against it finds it
again. Everything it logs goes to one file, appended over restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from bellhop_cloud.auth.keys import b64url, raw_public_bytes
from bellhop_cloud.enrolment import ENROLMENT_CONTEXT
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.mosquitto import PortTaken, free_port, wait_for_listener
from tests.support.postgres import admin, require_postgres, url
from tests.support.waiting import NotWithin, eventually

__all__ = [
    "PASSWORD",
    "RelayProcess",
    "Tenant",
    "bytecode_cache",
    "enrol_gateway",
    "identity",
    "postgres_database",
    "require_postgres",
]

PASSWORD: Final = "correct horse battery"
# Every REST call is local; a slow answer means something is wrong, not busy.
HTTP_TIMEOUT_S: Final = 10.0


@contextlib.asynccontextmanager
async def postgres_database(prefix: str = "bellhop_faults") -> AsyncIterator[str]:
    """A database of the test's own (its URL); dropped afterwards, whoever still holds it."""
    if os.environ.get("BELLHOP_TEST_NO_POSTGRES") == "1":
        require_postgres("BELLHOP_TEST_NO_POSTGRES=1")
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        await admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        require_postgres(f"{type(exc).__name__}: {exc}")
    try:
        yield url(name)
    finally:
        # FORCE: a relay killed with SIGKILL may leave sessions the server has not reaped yet.
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bytecode_cache(factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the processes the tests start keep their bytecode, in pytest's temp dirs.

    Where the environment forbids writing bytecode beside the sources
    (PYTHONDONTWRITEBYTECODE), every start of a relay or a gateway compiles
    every module it imports again: seconds per start on a busy machine, and
    these tests start dozens. What runs is the same code either way (a cached
    module is checked against its source's time and size).
    """
    base = factory.getbasetemp()
    # Beside pytest's numbered session dirs, so that the next session finds it too.
    root = base.parent if base.name.startswith("pytest-") else base
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(root / "bellhop-pycache"))


class RelayProcess:
    """One relay process at a time on fixed ports and one database, over restarts."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        settings: Mapping[str, str | int | float] | None = None,
    ) -> None:
        """`settings`: more of the relay's configuration, by field name (e.g. bridge_heartbeat_s)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.bridge_port = free_port()
        self.sqlite_path: Path | None = None
        if database_url is None:
            self.sqlite_path = workdir / "relay.db"
            database_url = f"sqlite:///{self.sqlite_path}"
        self.database_url = database_url
        self.log = workdir / "relay.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self._served = False
        values: dict[str, str | int | float] = {
            "database_url": database_url,
            "port": self.port,
            "bridge_port": self.bridge_port,
            "signing_key_path": str(workdir / "signing-key.pem"),
            # Cheap hashing: the tests log in, they do not measure argon2.
            "password_time_cost": 1,
            "password_memory_kib": 8,
            "password_parallelism": 1,
            **(settings or {}),
        }
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_CLOUD_")}
        self._env = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            **{f"BELLHOP_CLOUD_{k.upper()}": str(v) for k, v in values.items()},
        }

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bridge_url(self) -> str:
        return f"ws://127.0.0.1:{self.bridge_port}/v1/bridge"

    # -- the process ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the relay and return once it serves REST (database included) and bridges.

        Before its first start, ports another process took first are given up for
        others; afterwards they are kept (a gateway enrolled against it finds it again).
        """
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready(timeout)
            except PortTaken:
                self.close()
                if self._served or attempt == 2:
                    raise
                self._move(free_port(), free_port())
                continue
            except BaseException:
                self.close()  # a relay that never became ready does not outlive the test
                raise
            self._served = True
            return

    def _move(self, port: int, bridge_port: int) -> None:
        self.port, self.bridge_port = port, bridge_port
        self._env["BELLHOP_CLOUD_PORT"] = str(port)
        self._env["BELLHOP_CLOUD_BRIDGE_PORT"] = str(bridge_port)

    def spawn(self) -> None:
        """Start the process and return at once (a test that kills it during start-up)."""
        assert not self.running, "the relay is already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bellhop_cli.main", "cloud", "run"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self.workdir,
            )

    def wait_ready(self, timeout: float) -> None:
        """Wait until this process listens on both ports and /readyz answers (the database
        too), at most `timeout` s; PortTaken when another process holds one of its ports."""
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        proc = self.proc
        try:
            for port in (self.port, self.bridge_port):
                wait_for_listener(proc, port, timeout=max(0.1, deadline - time.monotonic()))
        except PortTaken as exc:
            if proc.poll() is None or "Errno 98" in self.tail() or "in use" in self.tail():
                raise PortTaken(f"the relay: {exc}:\n{self.tail()}") from None
        except TimeoutError:
            raise TimeoutError(
                f"the relay was not ready within {timeout} s:\n{self.tail()}"
            ) from None

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the relay exited with {proc.returncode}:\n{self.tail()}")
            return self._ready()

        try:
            eventually(ready, max(0.1, deadline - time.monotonic()), "the relay ready", every=0.05)
        except NotWithin:
            raise TimeoutError(
                f"the relay was not ready within {timeout} s:\n{self.tail()}"
            ) from None

    def _ready(self) -> bool:
        try:
            with self.http() as http:
                if http.get("/readyz", timeout=1.0).status_code != 200:
                    return False
            with socket.create_connection(("127.0.0.1", self.bridge_port), timeout=1.0):
                return True
        except (httpx.HTTPError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the gateways, a transaction cut wherever it was."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        """For `finally`: whatever state it is in, the process is gone afterwards."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    # -- what it logged -------------------------------------------------------------------
    def logged(self, text: str) -> int:
        """How many times `text` is in the log (all runs)."""
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # -- its database, read directly ------------------------------------------------------
    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the relay's database; placeholders `$1`, `$2`... in order."""
        if self.sqlite_path is not None:
            # Read-only, and waiting for the relay's writer rather than failing on its lock.
            db = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=10)
            try:
                rows = db.execute(re.sub(r"\$\d+", "?", sql), args).fetchall()
                return [tuple(row) for row in rows]
            finally:
                db.close()
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *args, timeout=10)]
        finally:
            await conn.close()

    # -- REST ------------------------------------------------------------------------------
    def http(self) -> httpx.Client:
        # Plain HTTP on loopback: no TLS context to build (tens of milliseconds each
        # time), and no proxy taken from the environment.
        return httpx.Client(
            base_url=self.url, timeout=HTTP_TIMEOUT_S, verify=False, trust_env=False
        )

    def tenant(self, name: str = "owner") -> Tenant:
        """A new owner (registered and logged in) with an organisation and one hotel."""
        email = f"{name}.{secrets.token_hex(4)}@example.com"
        with self.http() as http:
            _expect(
                http.post(
                    "/v1/auth/register",
                    json={"email": email, "password": PASSWORD, "display_name": name},
                ),
                201,
            )
            tokens = _expect(
                http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 200
            )
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            org = _expect(http.post("/v1/orgs", json={"name": f"Org {name}"}, headers=headers), 201)
            hotel = _expect(
                http.post(
                    f"/v1/orgs/{org['id']}/hotels",
                    json={"name": f"Hotel {name}", "timezone": "Europe/Lisbon"},
                    headers=headers,
                ),
                201,
            )
        return Tenant(self, headers, str(org["id"]), str(hotel["id"]))


@dataclass
class Tenant:
    """A hotel in the relay, as its owner sees it through the REST API."""

    relay: RelayProcess
    headers: dict[str, str]
    org_id: str
    hotel_id: str

    def another_hotel(self, name: str = "Another hotel") -> Tenant:
        """A new hotel of the same organisation, as the same owner sees it."""
        with self.relay.http() as http:
            hotel = _expect(
                http.post(
                    f"/v1/orgs/{self.org_id}/hotels",
                    json={"name": name, "timezone": "Europe/Lisbon"},
                    headers=self.headers,
                ),
                201,
            )
        return Tenant(self.relay, self.headers, self.org_id, str(hotel["id"]))

    def get(self, path: str, **params: Any) -> Any:
        with self.relay.http() as http:
            answer = http.get(
                f"/v1/hotels/{self.hotel_id}{path}", params=params, headers=self.headers
            )
        return _expect(answer, 200)

    def enrolment_token(self) -> str:
        with self.relay.http() as http:
            body = _expect(
                http.post(
                    f"/v1/hotels/{self.hotel_id}/enrolment-tokens", json={}, headers=self.headers
                ),
                201,
            )
        return str(body["token"])

    def enrol(self, key: Ed25519PrivateKey, name: str = "gw") -> dict[str, Any]:
        """Enrol a gateway holding `key` as `bellhop edge enrol` does; the relay's answer."""
        token = self.enrolment_token()
        with self.relay.http() as http:
            body: dict[str, Any] = _expect(
                http.post(
                    "/v1/gateways/enrol",
                    json={
                        "token": token,
                        "public_key": b64url(raw_public_bytes(key.public_key())),
                        "signature": b64url(key.sign(ENROLMENT_CONTEXT + token.encode())),
                        "name": name,
                    },
                ),
                201,
            )
        return body

    def points(self, device_id: str, metric: str) -> list[dict[str, Any]]:
        """Every raw point of a device's metric the relay holds, oldest first."""
        body = self.get(
            f"/devices/{device_id}/telemetry",
            metric=metric,
            start="2000-01-01T00:00:00Z",
            end="2100-01-01T00:00:00Z",
            limit=10_000,
        )
        points: list[dict[str, Any]] = body["points"]
        return points

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/alerts", limit=1000)
        return alerts

    def link(self) -> dict[str, Any]:
        """The hotel's one gateway link (the sync view)."""
        links = self.get("/sync")
        assert len(links) == 1, links
        link: dict[str, Any] = links[0]
        return link


def _expect(answer: httpx.Response, status: int) -> Any:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    return answer.json() if answer.content else None


def enrol_gateway(config: Path, relay: RelayProcess, token: str) -> str:
    """`bellhop edge enrol --token -` for the gateway of `config`; returns what it printed.

    The token goes through standard input, as an operator is told to pass it.
    """
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "bellhop_cli.main", "edge", "enrol"),
            *("--config", str(config), "--relay", relay.url, "--token", "-"),
        ],
        input=(token + "\n").encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out + done.stderr.decode(errors="replace")
    return out


def identity(data_dir: Path) -> dict[str, Any]:
    """What enrolment left in the gateway's data directory (bridge/identity.json)."""
    doc: dict[str, Any] = json.loads((data_dir / "bridge" / "identity.json").read_text())
    return doc
