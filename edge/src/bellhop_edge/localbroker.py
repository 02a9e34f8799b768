"""A local broker process with the gateway's generated files.

Used by the demo, the tests and the benchmarks: `MosquittoBroker` runs the
real Mosquitto on a free loopback port with the password file and ACL that
`bellhop_edge.provisioning.broker_files` renders, so what is tested is what
ships. Production runs Mosquitto under systemd instead (deploy/).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
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


class PortTaken(RuntimeError):
    """A process could not listen on its port: something else holds it."""


class _PortRange:
    """Where `free_port()` draws from when this process has a range of its own."""

    def __init__(self) -> None:
        self.ports: range | None = None
        self.cursor = 0


_own = _PortRange()


def use_port_range(first: int, last: int) -> None:
    """Draw `free_port()` from `first`..`last` in turn, from a random place in it.

    The kernel hands a port bound to 0 to anyone who binds 0 next once it is
    released, so two processes that each pick a "free" port and start a
    server on it later can be given the same one. Processes that each draw
    from a range of their own below the kernel's ephemeral range (parallel
    test workers) never hand each other a port, and no outgoing connection
    takes one meanwhile.
    """
    _own.ports = range(first, last + 1)
    _own.cursor = secrets.randbelow(len(_own.ports))


def free_port() -> int:
    """A loopback port nothing holds now: from this process's range if it has one."""
    ports = _own.ports
    if ports is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(len(ports)):
        port = ports[_own.cursor % len(ports)]
        _own.cursor += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


def _socket_inodes(pid: int) -> set[str] | None:
    """The socket inodes `pid` and its descendants hold; None where /proc cannot tell."""
    inodes: set[str] = set()
    pending = [pid]
    try:
        while pending:
            current = pending.pop()
            for fd in Path(f"/proc/{current}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    pending += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        return None
    return inodes


def _listening_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on `port` (any address); None without /proc."""
    found: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    # local address "ADDR:PORT" in hex, state 0A = LISTEN
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(fields[9])
    except OSError:
        return None
    return found


def wait_for_listener(
    proc: subprocess.Popen[bytes], port: int, *, host: str = "127.0.0.1", timeout: float = 10.0
) -> None:
    """Wait until `proc` itself (or a child of it) listens on `port`.

    Something answering on the port is not enough: when another process got
    the port first, `proc` fails to bind and exits, and a client would talk
    to the other one meanwhile. PortTaken when `proc` exits or another
    process holds the port; TimeoutError when nothing listens in time. Where
    /proc is not there to tell, an answer on the port while `proc` is still
    running is taken as its own.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PortTaken(
                f"the process exited with {proc.returncode} instead of listening on {port}"
            )
        # Connecting is cheap; the kernel's socket table (costly to read on a busy
        # host) is read only once something answers, to see whose socket it is.
        if _answers(host, port):
            listening = _listening_inodes(port)
            ours = _socket_inodes(proc.pid)
            if listening is None or ours is None or listening & ours:
                if proc.poll() is None:
                    return
                continue  # it exited meanwhile: the answer came from someone else
            if time.monotonic() > deadline:
                raise PortTaken(f"another process listens on port {port}")
        elif time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.02)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


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
        # A port of its own choosing may change until the broker has served on it once.
        self._port_movable = port is None
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
        """Start and return once this broker listens; a port it chose itself that
        another process took first is given up for another one."""
        for _ in range(4):
            try:
                self._start_once()
            except PortTaken:
                if not self._port_movable:
                    raise
                self.port = free_port()
                continue
            self._port_movable = False
            return
        self._start_once()

    def _start_once(self) -> None:
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
            wait_for_listener(self._proc, self.port, host=self.host)
        except PortTaken:
            self.stop()
            raise
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
