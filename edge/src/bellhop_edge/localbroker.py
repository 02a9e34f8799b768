"""A local broker process with the gateway's generated files.

Used by the demo, the tests and the benchmarks: `MosquittoBroker` runs the
real Mosquitto on a free loopback port with the password file and ACL that
`bellhop_edge.provisioning.broker_files` renders, so what is tested is what
ships. Production runs Mosquitto under systemd instead (deploy/).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bellhop_edge.files import write_atomic
from bellhop_edge.provisioning import broker_files as broker

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes] | None, *, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL), then SIGKILL if it is still there after 10 s."""
    if proc is None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class MosquittoBroker:
    """One mosquitto process; accounts are rendered by `provisioning.broker_files`."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, *, port: int | None = None, persistence: bool = False
    ) -> None:
        """`persistence`: keep queued messages in `workdir`, saved every second."""
        self.workdir = workdir
        self.port = port or free_port()
        self.persistence_dir = workdir / "persist" if persistence else None
        self._accounts: dict[str, broker.BrokerAccount] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    def add_gateway(self, hotel_id: str, *, username: str | None = None) -> Credentials:
        """The hotel's gateway account; `username` adds another with the same rights.

        The broker takes each client's username as its client id, so a second
        reader of the hotel (a benchmark's floor) needs an account of its own
        not to share the gateway's persistent session.
        """
        password = broker.generate_password()
        account = broker.gateway_account(hotel_id, password)
        if username is not None:
            account = replace(account, username=username)
        self._accounts[account.username] = account
        self._write_files()
        return Credentials(account.username, password)

    def add_device(self, hotel_id: str, device_id: str) -> Credentials:
        password = broker.generate_password()
        account = broker.device_account(hotel_id, device_id, password)
        self._accounts[account.username] = account
        self._write_files()
        return Credentials(account.username, password)

    def add_devices(self, hotel_id: str, device_ids: list[str]) -> dict[str, Credentials]:
        """Many devices with one write of the files (a 2,000-device hotel)."""
        out = {}
        for device_id in device_ids:
            password = broker.generate_password()
            account = broker.device_account(hotel_id, device_id, password)
            self._accounts[account.username] = account
            out[device_id] = Credentials(account.username, password)
        self._write_files()
        return out

    def remove(self, username: str) -> None:
        self._accounts.pop(username, None)
        self._write_files()

    def _write_files(self) -> None:
        accounts = list(self._accounts.values())
        write_atomic(self.workdir / "passwd", broker.render_passwd(accounts))
        write_atomic(self.workdir / "acl", broker.render_acl(accounts))

    def reload(self, *, timeout: float = 10.0) -> None:
        """SIGHUP, and wait until Mosquitto has re-read the password file and the ACL.

        It logs "Reloading config." as it reloads; clients it serves after
        that line are checked against the new files (one thread, in order).
        """
        assert self._proc is not None
        before = self.logged("Reloading config.")
        self._proc.send_signal(signal.SIGHUP)
        self.wait_logged("Reloading config.", before + 1, timeout=timeout)

    def logged(self, text: str) -> int:
        """How many times the broker has logged `text`."""
        return self.log_path.read_text().count(text) if self.log_path.exists() else 0

    def wait_logged(self, text: str, count: int, *, timeout: float = 10.0) -> None:
        """Wait until `text` has been logged `count` times."""
        deadline = time.monotonic() + timeout
        while self.logged(text) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not log {text!r} within {timeout} s")
            time.sleep(0.01)

    def start(self) -> None:
        self._write_files()
        if self.persistence_dir is not None:
            self.persistence_dir.mkdir(exist_ok=True)
        config = broker.render_config(
            port=self.port,
            password_file=self.workdir / "passwd",
            acl_file=self.workdir / "acl",
            persistence_dir=self.persistence_dir,
            run_as=getpass.getuser(),
        )
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(config + f"log_dest file {self.log_path}\nlog_type all\n")
        self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start:\n{log}") from None

    def stop(self, *, kill: bool = False) -> None:
        stop_process(self._proc, kill=kill)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid


def require_mosquitto() -> None:
    if not os.path.exists(MOSQUITTO):
        raise RuntimeError(
            "mosquitto is not installed: install it (apt-get install mosquitto) to run these tests"
        )


AMQTT_REQUIREMENT = "amqtt==0.12.1"


class EmbeddedBroker:
    """Fallback for the demo on a machine without Mosquitto: amqtt, loopback only.

    amqtt pins `websockets==15.0.1` exactly, which would pin the bridge's
    websockets too if it shared our environment; it runs instead as its own
    process from an isolated tool environment (`uv tool run`), so our lock
    stays free. It allows anonymous clients and has no ACL: a demo
    convenience on 127.0.0.1, never a deployment (docs/decisions.md).
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, port: int | None = None, uv: str | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self._uv = uv or shutil.which("uv")
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "amqtt.log"

    def add_gateway(self, hotel_id: str) -> Credentials | None:
        return None

    def add_device(self, hotel_id: str, device_id: str) -> Credentials | None:
        return None

    def add_devices(self, hotel_id: str, device_ids: list[str]) -> dict[str, Credentials]:
        return {}

    def reload(self) -> None:
        pass

    def start(self) -> None:
        if self._uv is None:
            raise RuntimeError("neither mosquitto nor uv is available to run a broker")
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed tool, generated config
                [self._uv, "tool", "run", "--from", AMQTT_REQUIREMENT, "amqtt", "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.host, self.port, timeout=120)  # first run downloads amqtt
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"amqtt did not start:\n{self.log_path.read_text()}") from None

    def stop(self, *, kill: bool = False) -> None:
        stop_process(self._proc, kill=kill)
        self._proc = None


def local_broker(workdir: Path) -> MosquittoBroker | EmbeddedBroker:
    """Mosquitto when installed, the embedded fallback otherwise."""
    if shutil.which("mosquitto") or os.path.exists(MOSQUITTO):
        return MosquittoBroker(workdir)
    return EmbeddedBroker(workdir)
