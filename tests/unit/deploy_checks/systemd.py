"""systemd units and drop-ins, and the configuration files and variables they name."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellhop_cloud.config import RelayConfig
from bellhop_edge.config import EdgeConfig

from tests.unit.deploy_checks.common import (
    INSTALLED_BELLHOP,
    bellhop_problems,
    deploy_files,
    load_edge,
    load_relay,
    option,
    rel,
    relay_constants,
)

BRIDGES_PER_NODE = 10_000
UNIT_SECTIONS = frozenset({"Unit", "Service", "Install"})
_VARIABLE = re.compile(r"\bBELLHOP_([A-Z]+)_([A-Z0-9_]*)")
_UNIT_KEY = re.compile(r"^[A-Z][A-Za-z0-9]*$")


# -- systemd --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    section: str
    key: str
    value: str
    line: int


def unit_entries(text: str, where: str, problems: list[str]) -> list[Entry]:
    """A unit file's assignments; what is not one is a problem (systemd would ignore it)."""
    entries: list[Entry] = []
    section: str | None = None
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        start = number
        while line.endswith("\\") and number < len(lines):  # continued on the next line
            line = line[:-1] + " " + lines[number].strip()
            number += 1
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line[1:-1] if line.endswith("]") else line
            if section not in UNIT_SECTIONS:
                problems.append(f"{where}:{start}: unknown section {line}")
            continue
        key, sep, value = line.partition("=")
        if section is None or not sep or not _UNIT_KEY.match(key.strip()):
            problems.append(f"{where}:{start}: not `Key=value` in a section: {line}")
            continue
        entries.append(Entry(section, key.strip(), value.strip(), start))
    return entries


def values(entries: list[Entry], section: str, key: str) -> list[str]:
    return [e.value for e in entries if e.section == section and e.key == key]


def words(entries: list[Entry], section: str, key: str) -> list[str]:
    return [w for value in values(entries, section, key) for w in value.split()]


def exec_problems(command: str, where: str) -> list[str]:
    argv = shlex.split(command.lstrip("@-:+!"))
    if not argv or not argv[0].startswith("/"):
        return [f"{where}: ExecStart needs an absolute program: {command}"]
    if Path(argv[0]).name != "bellhop":
        return []
    if argv[0] != INSTALLED_BELLHOP:
        return [f"{where}: bellhop is {INSTALLED_BELLHOP} on a host, not {argv[0]}"]
    return bellhop_problems(argv[1:], where)


def seconds(text: str) -> float:
    """A systemd time span of the forms the units use: `30`, `30s`, `2min`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", text.strip())
    if not match:
        raise ValueError(f"not a time span this test reads: {text}")
    return float(match.group(1)) * (60 if match.group(2) in {"min", "m"} else 1)


def relay_unit_problems(root: Path, entries: list[Entry], where: str) -> list[str]:
    problems: list[str] = []
    facts = relay_constants(root)

    def one(section: str, key: str) -> str:
        found = values(entries, section, key)
        return found[-1] if found else ""

    def expect(section: str, key: str, wanted: str) -> None:
        if one(section, key) != wanted:
            problems.append(f"{where}: {key}={one(section, key)!r}, expected {wanted}")

    if one("Service", "User") in {"", "root", "0"}:
        problems.append(f"{where}: the relay must run as a dedicated user (User=)")
    for key, wanted in (
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("Restart", "on-failure"),
    ):
        expect("Service", key, wanted)
    if "2" not in words(entries, "Service", "RestartPreventExitStatus"):
        problems.append(f"{where}: a bad configuration (exit 2) must not be restarted")
    state = one("Service", "StateDirectory")
    if not state or f"/var/lib/{state}" not in words(entries, "Service", "ReadWritePaths"):
        problems.append(f"{where}: ReadWritePaths must hold the state directory /var/lib/{state}")
    try:
        stop = seconds(one("Service", "TimeoutStopSec"))
    except ValueError as exc:
        problems.append(f"{where}: TimeoutStopSec: {exc}")
    else:
        # REST drains, then the bridges close, then the link rows and the database.
        needed = facts["graceful_s"] + facts["close_all_s"] + 5
        if not needed <= stop <= 60:
            problems.append(f"{where}: TimeoutStopSec={stop:g} s, expected {needed:g} to 60")
    nofile = one("Service", "LimitNOFILE").partition(":")[2] or one("Service", "LimitNOFILE")
    if not nofile.isdigit() or int(nofile) < 2 * BRIDGES_PER_NODE:
        problems.append(f"{where}: LimitNOFILE={nofile!r}: too few for {BRIDGES_PER_NODE} bridges")
    for key in ("After", "Wants"):
        for unit in ("network-online.target", "postgresql.service", "redis-server.service"):
            if unit not in words(entries, "Unit", key):
                problems.append(f"{where}: {key}= lacks {unit}")
    argv = shlex.split(one("Service", "ExecStart"))
    if argv[1:3] != ["cloud", "run"] or option(argv, "--config") != "/etc/bellhop/relay-%i.toml":
        problems.append(f"{where}: ExecStart must be `bellhop cloud run --config FILE-%i.toml`")
    example = load_relay(root / "deploy/relay/relay-node.toml")
    if isinstance(example, RelayConfig) and not example.signing_key_path.is_relative_to(
        f"/var/lib/{state}"
    ):
        problems.append(
            f"{where}: the example's signing_key_path is outside the writable /var/lib/{state}"
        )
    return problems


def unit_problems(root: Path) -> list[str]:
    """Every unit and drop-in: sections, lines, required keys, commands; the relay's specifics."""
    problems: list[str] = []
    deploy = root / "deploy"
    units = sorted(deploy.glob("systemd/*.service"))
    drop_ins = sorted(deploy.glob("*/*.service.d/*.conf"))
    if not units:
        problems.append("deploy/systemd: no units")
    for path in [*units, *drop_ins]:
        where = rel(root, path)
        entries = unit_entries(path.read_text(), where, problems)
        starts = values(entries, "Service", "ExecStart")
        if path in units:
            for section, key in (("Unit", "Description"), ("Install", "WantedBy")):
                if not values(entries, section, key):
                    problems.append(f"{where}: [{section}] {key}= is missing")
            if len([s for s in starts if s]) != 1:
                problems.append(f"{where}: needs exactly one ExecStart")
        problems += [p for s in starts if s for p in exec_problems(s, where)]
        if path.name == "bellhop-relay@.service":
            problems += relay_unit_problems(root, entries, where)
    if not (deploy / "systemd/bellhop-relay@.service").is_file():
        problems.append("deploy/systemd/bellhop-relay@.service is missing")
    return problems


# -- configuration files and variables ------------------------------------------------------
def variable_problems(name: str, where: str) -> list[str]:
    match = _VARIABLE.fullmatch(name)
    if match is None or not match.group(2):
        return []  # a placeholder such as BELLHOP_CLOUD_<KEY> or BELLHOP_CLOUD_*
    component, key = match.groups()
    if component == "CLOUD":
        if key.lower() not in RelayConfig.model_fields:
            return [f"{where}: {name} is not a relay setting"]
        return []
    if component == "EDGE":
        model: Any = EdgeConfig
        for part in key.lower().split("__"):
            fields = getattr(model, "model_fields", None)
            if not isinstance(fields, dict) or part not in fields:
                return [f"{where}: {name} is not a gateway setting"]
            model = fields[part].annotation
        return []
    return [f"{where}: {name}: BELLHOP_CLOUD_* or BELLHOP_EDGE_*, nothing else"]


def config_problems(root: Path) -> list[str]:
    """Every TOML file loads as the configuration it is for; every variable named is real."""
    problems: list[str] = []
    for path in deploy_files(root):
        where = rel(root, path)
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _VARIABLE.finditer(line):
                problems += variable_problems(match.group(0), f"{where}:{number}")
        if path.suffix != ".toml":
            continue
        try:
            keys = set(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{where}: not TOML: {exc}")
            continue
        if path.parent.name == "relay":
            fields = set(RelayConfig.model_fields)
            loaded: object = load_relay(path)
        elif path.parent.name == "edge":
            fields = set(EdgeConfig.model_fields)
            loaded = load_edge(path)
        else:
            problems.append(f"{where}: neither a relay (deploy/relay) nor a gateway (deploy/edge)")
            continue
        problems += [f"{where}: {key} is not a configuration key" for key in keys - fields]
        if isinstance(loaded, str):
            problems.append(f"{where}: does not load: {loaded}")
    example = load_relay(root / "deploy/relay/relay-node.toml")
    if isinstance(example, RelayConfig):
        problems += scale_out_problems(example, "deploy/relay/relay-node.toml")
    return problems


def scale_out_problems(config: RelayConfig, where: str) -> list[str]:
    """What a node among several needs: shared stores, its name, the load balancer."""
    problems = []
    if config.is_sqlite:
        problems.append(f"{where}: several nodes share one PostgreSQL, not SQLite")
    if config.rate_limit_backend != "redis" or config.bus_backend != "redis":
        problems.append(f"{where}: rate_limit_backend and bus_backend must be redis")
    if config.node_id is None:
        problems.append(f"{where}: node_id is unset")
    if not config.trusted_proxies:
        problems.append(f"{where}: trusted_proxies must name the load balancer")
    if config.bridge_public_url is None or not config.bridge_public_url.startswith("wss://"):
        problems.append(f"{where}: bridge_public_url must be the load balancer's wss:// URL")
    if config.migrate_on_start:
        problems.append(f"{where}: nodes sharing a database migrate once, not at each start")
    return problems
