"""The demo's cloud relay: `bellhop cloud run` as a process of its own, and its REST API.

The relay runs as a subprocess started exactly as a user starts it,
`bellhop cloud run --config relay.toml`, with the embedded defaults (SQLite in
the demo's directory, the in-process bus and rate limits). A process, not the
relay's app served inside the demo, because:

- it is the user's code path end to end: the command line, the configuration
  file, uvicorn's signal handling and the clean exit on SIGTERM;
- the outage of the story is a real one: SIGTERM (every bridge is told
  `shutting_down`), then a new process on the same database;
- its log goes to a file, not into the narration.

It runs in a session of its own, so that Ctrl-C in a terminal reaches the demo
only: the demo stops the gateways first, then the relay, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from bellhop_cli.demo.narration import DemoError, poll, say

__all__ = ["Cloud", "DemoRelay", "Rest", "set_up_cloud"]

STOP_WITHIN_S: Final = 30.0
READY_WITHIN_S: Final = 60.0
# Hotels of the demo's organisation: (short name, name, IANA zone).
HOTELS: Final = (
    ("Lisbon", "Seaside Lisbon", "Europe/Lisbon"),
    ("Porto", "Seaside Porto", "Europe/Lisbon"),
    ("Madrid", "Seaside Madrid", "Europe/Madrid"),
    ("Paris", "Seaside Paris", "Europe/Paris"),
)
OWNER: Final = "owner@example.com"
MANAGER: Final = "manager@example.com"


class DemoRelay:
    """One relay process at a time, on fixed ports and one database, over restarts."""

    def __init__(self, workdir: Path, *, port: int, bridge_port: int) -> None:
        from bellhop_edge.localbroker import free_port

        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port or free_port()
        self.bridge_port = bridge_port or free_port()
        self.database = workdir / "relay.db"
        self.config = workdir / "relay.toml"
        self.log = workdir / "relay.log"
        # Only what the demo must choose; everything else is the relay's default.
        self.config.write_text(
            f'database_url = "sqlite:///{self.database}"\n'
            f'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f"bridge_port = {self.bridge_port}\n"
            f'signing_key_path = "{workdir / "signing-key.pem"}"\n'
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.served = False  # the current process served: a SIGTERM then ends it cleanly

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bridge_url(self) -> str:
        return f"ws://127.0.0.1:{self.bridge_port}/v1/bridge"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> float:
        """Start `bellhop cloud run`; returns the seconds until it served REST and bridges."""
        began = time.monotonic()
        self.served = False
        # The file is the configuration: settings of the caller's environment stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_CLOUD_")}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bellhop_cli.main", "cloud", "run", "--config", str(self.config)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**env, "PYTHONUNBUFFERED": "1"},
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            await poll(self._ready, "the relay to serve", timeout=READY_WITHIN_S, every=0.1)
            self.served = True
        except BaseException:
            await self.stop()
            raise
        return time.monotonic() - began

    async def _ready(self) -> bool | None:
        if not self.running:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise DemoError(f"the relay exited with status {self.returncode()}:\n{tail}")
        try:
            async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
                if (await http.get(f"{self.url}/readyz")).status_code != 200:
                    return None
            _, writer = await asyncio.open_connection("127.0.0.1", self.bridge_port)
            writer.close()
            await writer.wait_closed()
        except (httpx.HTTPError, OSError):
            return None
        return True

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def stop(self) -> int | None:
        """SIGTERM, as a service manager stops it; its exit status (None: never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_WITHIN_S):
                    await proc.wait()
            except TimeoutError:
                say(f"the relay did not stop within {STOP_WITHIN_S:g} s: killed")
                proc.kill()
                await proc.wait()
        return proc.returncode


class Rest:
    """One account's calls to the relay's REST API, its access token renewed as needed."""

    def __init__(self, url: str) -> None:
        # Plain HTTP on loopback, no proxy from the environment; a command may wait 11 s.
        self._http = httpx.AsyncClient(base_url=url, timeout=30.0, trust_env=False)
        self._access: str | None = None
        self._refresh: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def register(self, email: str, password: str, name: str) -> None:
        body = {"email": email, "password": password, "display_name": name}
        await self.call("POST", "/v1/auth/register", json=body, expect=201)

    async def login(self, email: str, password: str) -> None:
        body = {"email": email, "password": password}
        self._take(await self.call("POST", "/v1/auth/login", json=body))

    def _take(self, tokens: dict[str, Any]) -> None:
        self._access, self._refresh = tokens["access_token"], tokens["refresh_token"]

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        expect: int | tuple[int, ...] = 200,
    ) -> Any:
        """The answer's JSON; DemoError naming the call and the problem otherwise."""
        answer = await self._send(method, path, json, params)
        if answer.status_code == 401 and self._refresh is not None:
            # The access token lives ten minutes; the demo may run for hours.
            refreshed = await self._http.post(
                "/v1/auth/refresh", json={"refresh_token": self._refresh}
            )
            if refreshed.status_code == 200:
                self._take(refreshed.json())
                answer = await self._send(method, path, json, params)
        if answer.status_code not in ((expect,) if isinstance(expect, int) else expect):
            try:
                problem = answer.json()
                detail = f"{problem.get('code')}: {problem.get('detail')}"
            except ValueError:
                detail = answer.text[:300]
            raise DemoError(f"{method} {path}: {answer.status_code} {detail}")
        return answer.json() if answer.content else None

    async def _send(
        self, method: str, path: str, json: Any, params: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._access}"} if self._access else {}
        try:
            return await self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {path}: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class CloudHotel:
    label: str  # how the narration names it
    name: str
    hotel_id: str


@dataclass(frozen=True, slots=True)
class Cloud:
    """What the relay holds for the demo, and the accounts that act on it."""

    org_id: str
    hotels: tuple[CloudHotel, ...]
    owner: Rest
    manager: Rest
    manager_password: str

    async def enrolment_token(self, hotel_id: str) -> str:
        """A one-time token for one gateway of the hotel, as an owner asks for it."""
        path = f"/v1/hotels/{hotel_id}/enrolment-tokens"
        body = await self.owner.call("POST", path, json={}, expect=201)
        return str(body["token"])

    async def aclose(self) -> None:
        await self.owner.aclose()
        await self.manager.aclose()


async def set_up_cloud(url: str, hotels: int) -> Cloud:
    """An owner, their organisation and hotels, and a manager of every hotel, via REST."""
    owner, manager = Rest(url), Rest(url)
    try:
        owner_password = secrets.token_urlsafe(12)
        await owner.register(OWNER, owner_password, "Owner")
        await owner.login(OWNER, owner_password)
        org = await owner.call("POST", "/v1/orgs", json={"name": "Seaside Hotels"}, expect=201)
        made = []
        for index in range(hotels):
            label, name, zone = (
                HOTELS[index]
                if index < len(HOTELS)
                else (f"H{index + 1}", f"Hotel {index + 1}", "UTC")
            )
            hotel = await owner.call(
                "POST",
                f"/v1/orgs/{org['id']}/hotels",
                json={"name": name, "timezone": zone},
                expect=201,
            )
            made.append(CloudHotel(label, name, str(hotel["id"])))
        password = secrets.token_urlsafe(12)
        await manager.register(MANAGER, password, "Remote manager")
        grant = {"email": MANAGER, "role": "manager"}  # every hotel of the organisation
        await owner.call("POST", f"/v1/orgs/{org['id']}/grants", json=grant, expect=201)
        await manager.login(MANAGER, password)
    except BaseException:
        await owner.aclose()
        await manager.aclose()
        raise
    return Cloud(str(org["id"]), tuple(made), owner, manager, password)
