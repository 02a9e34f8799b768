"""The kernel's queues (sysctl) and Mosquitto's files beside the gateway."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from bellhop_edge.config import EdgeConfig

from tests.unit.deploy_checks.common import load_edge, option, rel, relay_constants
from tests.unit.deploy_checks.systemd import unit_entries, values, words


# -- the kernel and Mosquitto ---------------------------------------------------------------
def sysctl_problems(root: Path) -> list[str]:
    problems: list[str] = []
    backlog = relay_constants(root)["backlog"]
    settings: dict[str, str] = {}
    for path in sorted((root / "deploy/sysctl").glob("*.conf")):
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            key, sep, value = (part.strip() for part in line.partition("="))
            if not sep or not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", key):
                problems.append(f"{rel(root, path)}:{number}: not `key = value`: {line}")
                continue
            if Path("/proc/sys").is_dir() and not Path("/proc/sys", *key.split(".")).exists():
                problems.append(f"{rel(root, path)}:{number}: the kernel has no {key}")
            settings[key] = value
    for key in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog"):
        value = settings.get(key, "0")
        if not value.isdigit() or int(value) < backlog:
            problems.append(f"sysctl: {key} = {value}, below the relay's listen backlog {backlog}")
    return problems


def mosquitto_problems(root: Path) -> list[str]:
    """The broker's files agree with each other, with the gateway's unit and its example."""
    problems: list[str] = []
    deploy = root / "deploy"
    directives: dict[str, list[list[str]]] = {}
    for number, raw in enumerate((deploy / "mosquitto/mosquitto.conf").read_text().splitlines(), 1):
        parts = raw.split("#", 1)[0].split()
        if parts and not re.fullmatch(r"[a-z_]+", parts[0]):
            problems.append(f"mosquitto.conf:{number}: not a directive: {raw}")
        elif parts:
            directives.setdefault(parts[0], []).append(parts[1:])
    listeners = {
        (int(args[0]), args[1] if len(args) > 1 else "") for args in directives.get("listener", [])
    }
    edge = load_edge(deploy / "edge/edge.toml")
    if isinstance(edge, EdgeConfig) and (edge.mqtt.port, edge.mqtt.host) not in listeners:
        problems.append(
            f"mosquitto.conf: no listener on {edge.mqtt.host}:{edge.mqtt.port} for the gateway"
        )
    files = [
        Path(args[0]) for key in ("password_file", "acl_file") for args in directives.get(key, [])
    ]
    broker_dir = files[0].parent if files else None
    unused: list[str] = []  # their syntax is unit_problems' business
    drop_in = unit_entries(
        (deploy / "mosquitto/mosquitto.service.d/bellhop.conf").read_text(), "", unused
    )
    started = [shlex.split(v) for v in values(drop_in, "Service", "ExecStart") if v]
    conf = option(started[-1], "-c") if started else None
    if broker_dir is None or conf is None or Path(conf).parent != broker_dir:
        problems.append(f"mosquitto drop-in: runs -c {conf}, not the config in {broker_dir}")
    if broker_dir is not None and str(broker_dir) not in words(drop_in, "Service", "ReadOnlyPaths"):
        problems.append(f"mosquitto drop-in: ReadOnlyPaths must hold {broker_dir}")
    edge_unit = unit_entries((deploy / "systemd/bellhop-edge.service").read_text(), "", unused)
    if broker_dir is not None and str(broker_dir) not in words(
        edge_unit, "Service", "ReadWritePaths"
    ):
        problems.append(f"bellhop-edge.service: the gateway must be able to write {broker_dir}")
    user = values(edge_unit, "Service", "User")
    for path in deploy.glob("mosquitto/sudoers.*"):
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            rule = re.fullmatch(r"(\S+)\s+ALL=\(root\)\s+NOPASSWD:\s+(/\S+)(\s.*)?", line)
            if rule is None or [rule.group(1)] != user:
                problems.append(f"{path.name}:{number}: not a rule for the gateway's user {user}")
    return problems
