"""Broker helpers shared by the ACL, TLS and provisioning tests.

`ProvisionedBroker` runs Mosquitto with exactly the mosquitto.conf that
`bellhop devices ca` renders (listening on loopback here) and records its pid
where `--broker-pid-file` reads it, so the tests exercise the files that ship.

Every wait here is on a condition with a deadline, never a fixed pause:
Mosquitto applies a SIGHUP at its next loop turn, so after a reload the
tests poll connection attempts until the broker gives the expected answer;
and "nothing arrived" is shown by a marker published after the thing that
must not happen (`collect_until`).
"""

from __future__ import annotations

import asyncio
import getpass
import io
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from bellhop_edge.localbroker import MOSQUITTO, stop_process
from paho.mqtt.reasoncodes import ReasonCode

from bellhop_cli.main import build_parser
from tests.support.mosquitto import (
    PortTaken,
    free_port,
    require_mosquitto,
    wait_for_listener,
)

POLL_S = 0.02
"""Between two connection attempts while waiting for a reload to apply."""


# -- the `bellhop devices` command and its broker ------------------------------------------
@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*argv: str | Path) -> CliResult:
    """`bellhop devices …` in-process, parsed by the `bellhop` command itself."""
    args = build_parser().parse_args(["devices", *(str(a) for a in argv)])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = args.handler(args)
    return CliResult(code, out.getvalue(), err.getvalue())


class ProvisionedBroker:
    """A gateway's data directory with a broker configured by `bellhop devices ca`."""

    host = "127.0.0.1"

    def __init__(self, root: Path, hotel_id: str) -> None:
        self.hotel_id = hotel_id
        self.config = root / "edge.toml"
        self.data_dir = root / "edge"
        self.config.write_text(f'hotel_id = "{hotel_id}"\ndata_dir = "{self.data_dir}"\n')
        self.broker_dir = self.data_dir / "broker"
        self.tls_dir = self.broker_dir / "tls"
        self.pid_file = root / "mosquitto.pid"
        self.log = root / "mosquitto.log"
        self.port = free_port()
        self.tls_port = free_port()
        self.bundles = root / "bundles"
        self._proc: subprocess.Popen[bytes] | None = None

    def ca(self, *extra: str | Path) -> CliResult:
        result = run_cli(
            "ca",
            "--config",
            self.config,
            "--hosts",
            "gateway.test.lan",
            "--plain-port",
            str(self.port),
            "--tls-port",
            str(self.tls_port),
            "--tls-bind",
            self.host,
            "--mosquitto-user",
            getpass.getuser(),
            *extra,
        )
        assert result.code == 0, result.err
        return result

    def devices(self, command: str, *argv: str | Path, reload: bool = True) -> CliResult:
        """A `bellhop devices` command that changes accounts, reloading this broker."""
        how = ("--broker-pid-file", self.pid_file) if reload else ("--no-reload",)
        bundle = ("--out", self.bundles, "--broker-host", self.host, "--broker-port")
        bundle_args = (*bundle, str(self.tls_port)) if command in {"add", "rotate"} else ()
        return run_cli(command, "--config", self.config, *how, *bundle_args, *argv)

    def start(self) -> None:
        conf = self.broker_dir / "mosquitto.conf"
        run_conf = self.broker_dir / "mosquitto.test.conf"
        run_conf.write_text(conf.read_text() + f"log_dest file {self.log}\nlog_type all\n")
        # An empty password file and ACL until the first account (mosquitto needs both).
        for name in ("passwd", "acl"):
            (self.broker_dir / name).touch()
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(run_conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            # This broker itself on both ports, not whatever else answers there.
            wait_for_listener(self._proc, self.port)
            wait_for_listener(self._proc, self.tls_port)
        except (TimeoutError, PortTaken):
            self.stop()
            raise RuntimeError(f"mosquitto did not start:\n{self.log.read_text()}") from None

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def reload(self) -> None:
        """SIGHUP, as `--broker-pid-file` sends it; wait for its effect with `wait_*`."""
        os.kill(int(self.pid_file.read_text()), signal.SIGHUP)

    def gateway_password(self) -> str:
        return (self.broker_dir / "gateway.secret").read_text().strip()

    def client(
        self, username: str, password: str, *, ca: Path | None = None, **kwargs: object
    ) -> aiomqtt.Client:
        """Over TLS, verifying the broker against `ca` (default: the hotel CA)."""
        tls = aiomqtt.TLSParameters(ca_certs=str(ca or self.tls_dir / "ca.crt"))
        return aiomqtt.Client(
            self.host,
            self.tls_port,
            username=username,
            password=password,
            tls_params=tls,
            timeout=5,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
async def gateway_broker(tmp_path: Path, hotel_id: str) -> AsyncIterator[ProvisionedBroker]:
    """`devices ca` and `devices gateway` done, the broker running on their files."""
    require_mosquitto()
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    gb.start()
    try:
        result = gb.devices("gateway")
        assert result.code == 0, result.err
        await wait_accepted(lambda: gb.client(f"gateway-{hotel_id}", gb.gateway_password()))
        yield gb
    finally:
        gb.stop()


# -- connecting --------------------------------------------------------------------------
async def _attempt(client: aiomqtt.Client) -> str | None:
    """None when `client` connects (it disconnects at once), else why it could not."""
    try:
        async with client:
            return None
    except aiomqtt.MqttError as exc:
        _close_leaked_sockets(exc)
        return str(exc)


def _close_leaked_sockets(exc: BaseException) -> None:
    """Close the socket a failed TLS handshake leaves in the traceback of `exc`.

    paho-mqtt 2.2 never closes it: left to the collector, it would surface as a
    ResourceWarning in whichever later test happens to collect it.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, socket.socket):
                    value.close()
            tb = tb.tb_next
        error = error.__cause__ or error.__context__


async def connect_error(client: aiomqtt.Client) -> str:
    """Why connecting fails (the test fails if it succeeds)."""
    error = await _attempt(client)
    if error is None:
        pytest.fail("the connection was accepted")
    return error


async def wait_accepted(connect: Callable[[], aiomqtt.Client], *, timeout: float = 5.0) -> None:
    """Until the broker accepts a connection made by `connect()`, e.g. once a reload applies."""
    last = "no attempt finished"
    try:
        async with asyncio.timeout(timeout):
            while (error := await _attempt(connect())) is not None:
                last = error
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        pytest.fail(f"still refused after {timeout} s: {last}")


async def wait_refused(
    connect: Callable[[], aiomqtt.Client], reason: str, *, timeout: float = 5.0
) -> str:
    """Until connecting with `connect()` fails with `reason` (any case) in its message."""
    last = "no attempt finished"
    try:
        async with asyncio.timeout(timeout):
            while True:
                error = await _attempt(connect())
                if error is not None and reason.lower() in error.lower():
                    return error
                last = error or "accepted"
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        pytest.fail(f"not refused with {reason!r} after {timeout} s: {last}")


# -- messages ----------------------------------------------------------------------------
async def subscribe(client: aiomqtt.Client, topic: str, *, qos: int = 1) -> None:
    """Subscribe, returning once the broker's SUBACK has granted it."""
    granted = await client.subscribe(topic, qos=qos)
    failed = [
        code
        for code in granted
        if (code.is_failure if isinstance(code, ReasonCode) else code >= 0x80)
    ]
    assert not failed, f"the broker refused the subscription to {topic}: {granted}"


async def collect_until(client: aiomqtt.Client, marker: str, *, timeout: float = 5.0) -> list[str]:
    """Topics `client` receives, up to and including the first message on `marker`.

    The tests publish at QoS 1 and await each PUBACK before the next publish;
    Mosquitto routes a message to its subscribers before it acknowledges it,
    and delivers to each subscriber in routing order. So a marker published
    last arrives after everything routed before it: what is missing when the
    marker arrives was never delivered.
    """
    got: list[str] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            got.append(message.topic.value)
            if message.topic.value == marker:
                return got
    pytest.fail(f"disconnected before the marker {marker} arrived; got {got}")
