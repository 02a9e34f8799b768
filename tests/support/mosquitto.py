"""A real Mosquitto for tests, started on a free port with the gateway's generated files."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bellhop_edge import broker

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


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class MosquittoBroker:
    """One mosquitto process; accounts are rendered by `bellhop_edge.broker`."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self._accounts: dict[str, broker.BrokerAccount] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    def add_gateway(self, hotel_id: str) -> Credentials:
        password = broker.generate_password()
        account = broker.gateway_account(hotel_id, password)
        self._accounts[account.username] = account
        self._write_files()
        return Credentials(account.username, password)

    def add_device(self, hotel_id: str, device_id: str) -> Credentials:
        password = broker.generate_password()
        account = broker.device_account(hotel_id, device_id, password)
        self._accounts[account.username] = account
        self._write_files()
        return Credentials(account.username, password)

    def remove(self, username: str) -> None:
        self._accounts.pop(username, None)
        self._write_files()

    def _write_files(self) -> None:
        accounts = list(self._accounts.values())
        broker.write_atomic(self.workdir / "passwd", broker.render_passwd(accounts))
        broker.write_atomic(self.workdir / "acl", broker.render_acl(accounts))

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password file and the ACL."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)

    def start(self) -> None:
        self._write_files()
        config = broker.render_config(
            port=self.port,
            password_file=self.workdir / "passwd",
            acl_file=self.workdir / "acl",
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
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
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
