"""Every file in deploy/ is sound: it parses, and it agrees with the code it configures.

- systemd units and drop-ins: known sections, well-formed lines, and `systemd-analyze verify`
  where it is installed; every `ExecStart` that runs `bellhop` is a command the real argument
  parser accepts; the relay's unit is hardened, sized for 10,000 bridges and given the time
  a clean stop takes.
- TOML: the example relay node loads with `bellhop_cloud.config.load_config`, the gateway's
  example with `bellhop_edge.config.load_config`, so every key is a real field; every
  `BELLHOP_CLOUD_*` and `BELLHOP_EDGE_*` variable named anywhere in deploy/ is a setting.
- HAProxy: routes, ports, health checks and timeouts agree with the relay; `haproxy -c` where
  it is installed.
- Compose: every file it mounts or builds from exists, every command is one `bellhop` accepts,
  each node's configuration (the mounted file with the service's environment) loads, and the
  nodes and the load balancer agree with each other.
- The Dockerfile installs from uv.lock with the uv that `./run` uses; the sysctl file raises
  the kernel's queues to the relay's listen backlog; Mosquitto's files agree with the
  gateway's configuration and unit.

The checks are in tests/unit/deploy_checks/; test_deploy_checks.py shows that each can fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bellhop_cloud.config import RelayConfig

from tests.unit.deploy_checks.balancer import (
    compose_problems,
    dockerfile_problems,
    haproxy_problems,
    read_haproxy,
)
from tests.unit.deploy_checks.common import (
    INSTALLED_BELLHOP,
    ROOT,
    coverage_problems,
    deploy_files,
    load_relay,
)
from tests.unit.deploy_checks.host import mosquitto_problems, sysctl_problems
from tests.unit.deploy_checks.systemd import config_problems, unit_problems


# -- the repository -------------------------------------------------------------------------
def test_every_file_in_deploy_is_covered() -> None:
    assert deploy_files(ROOT)
    assert coverage_problems(ROOT) == []


def test_units_parse_and_run_real_commands() -> None:
    problems = unit_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_configurations_load_and_every_variable_is_a_setting() -> None:
    problems = config_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_the_example_relay_node_loads() -> None:
    config = load_relay(ROOT / "deploy/relay/relay-node.toml")
    assert isinstance(config, RelayConfig), config
    assert config.database_url.startswith("postgresql+asyncpg://")
    assert config.redis_url is not None
    assert (config.rate_limit_backend, config.bus_backend) == ("redis", "redis")


def test_haproxy_agrees_with_the_relay() -> None:
    problems = haproxy_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_compose_files_exist_and_nodes_agree() -> None:
    problems = compose_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_the_image_installs_from_the_lock() -> None:
    problems = dockerfile_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_sysctl_raises_the_queues_to_the_backlog() -> None:
    problems = sysctl_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_mosquitto_files_agree_with_the_gateway() -> None:
    problems = mosquitto_problems(ROOT)
    assert not problems, "\n".join(problems)


def _bellhop_here() -> str:
    here = Path(sys.executable).with_name("bellhop")
    return str(here) if here.is_file() else shutil.which("true") or "/bin/true"


def _staged(text: str) -> str:
    """A unit whose programs exist on this machine (what they run is checked above)."""

    def program(match: re.Match[str]) -> str:
        path = match.group(2)
        if path == INSTALLED_BELLHOP:
            path = _bellhop_here()
        elif not os.access(path, os.X_OK):
            path = shutil.which("true") or "/bin/true"
        return match.group(1) + path

    return re.sub(r"^(ExecStart=[-@:+!]*)(/\S+)", program, text, flags=re.MULTILINE)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: units checked by this file's parser only")
    staged: list[Path] = []
    for unit in sorted((ROOT / "deploy/systemd").glob("*.service")):
        # A template is verified as an instance, so that %i expands.
        name = unit.name.replace("@.", "@relay-1.")
        target = tmp_path / name
        target.write_text(_staged(unit.read_text()))
        staged.append(target)
    for drop_in in sorted((ROOT / "deploy").glob("*/*.service.d/*.conf")):
        base = tmp_path / drop_in.parent.name.removesuffix(".d")
        base.write_text("[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n")
        (tmp_path / drop_in.parent.name).mkdir(exist_ok=True)
        (tmp_path / drop_in.parent.name / drop_in.name).write_text(_staged(drop_in.read_text()))
        staged.append(base)
    problems = []
    for unit in staged:
        done = subprocess.run(
            [analyze, "verify", "--man=no", f"./{unit.name}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        said = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if str(tmp_path) in line or unit.name.partition(".")[0] in line
        ]
        if done.returncode != 0 or said:
            problems.append(f"{unit.name}: exit {done.returncode}: " + " | ".join(said))
    assert not problems, "\n".join(problems)


def _self_signed(path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_haproxy_accepts_its_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed on this CI machine (scripts/check installs it)")
        pytest.skip("haproxy is not installed: `haproxy -c` not run (apt-get install haproxy)")
    problems: list[str] = []
    cert = read_haproxy(ROOT, problems).cert
    assert cert is not None, problems
    _self_signed(tmp_path / "relay.pem")
    config = tmp_path / "haproxy.cfg"
    text = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    config.write_text(text.replace(cert, str(tmp_path / "relay.pem")))
    done = subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    output = done.stdout + done.stderr
    # The nodes' names resolve only where they run (DNS, /etc/hosts, Compose's network).
    said = [
        line
        for line in output.splitlines()
        if ("[WARNING]" in line or "[ALERT]" in line) and "could not resolve address" not in line
    ]
    assert done.returncode == 0, output
    assert not said, "\n".join(said)
