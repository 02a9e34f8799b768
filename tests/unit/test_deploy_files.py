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

The checks are functions of a repository root that return problems, so the last tests run
them on copies with deliberate faults: a check that cannot fail would prove nothing. The
relay's constants (stop bounds, backlog, routes) are read from its source with `ast`:
importing the app to read three numbers would cost seconds.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import io
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.config import load_config as load_relay_config
from bellhop_cloud.errors import ConfigError as RelayConfigError
from bellhop_edge.config import EdgeConfig
from bellhop_edge.config import load_config as load_edge_config
from bellhop_edge.errors import ConfigError as EdgeConfigError

from bellhop_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
# Where the units expect the code: a checkout with its environment (deploy/README.md).
INSTALLED_BELLHOP = "/opt/bellhop/.venv/bin/bellhop"
BRIDGES_PER_NODE = 10_000
UNIT_SECTIONS = frozenset({"Unit", "Service", "Install"})
HAPROXY_SECTIONS = frozenset(
    {"global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist"}
)
# Every file in deploy/ is one of these, each checked below; a new kind needs a check.
KNOWN_FILES = (
    "README.md",
    "*/README.md",
    "systemd/*.service",
    "*/*.service.d/*.conf",
    "mosquitto/mosquitto.conf",
    "mosquitto/sudoers.*",
    "edge/*.toml",
    "relay/*.toml",
    "haproxy/haproxy.cfg",
    "sysctl/*.conf",
    "compose/compose.yaml",
    "compose/Dockerfile",
    "compose/Dockerfile.dockerignore",
    # Checked by test_grafana_dashboards.py: queries name real metrics and measurements.
    "grafana/dashboards/*.json",
    "grafana/provisioning/*/*.yaml",
)
_VARIABLE = re.compile(r"\bBELLHOP_([A-Z]+)_([A-Z0-9_]*)")
_UNIT_KEY = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_HAPROXY_TIME = re.compile(r"^(\d+)(us|ms|s|m|h|d)?$")
_HAPROXY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# -- reading the code's own facts -----------------------------------------------------------
def module_constant(path: Path, name: str) -> Any:
    """A module-level constant's literal value, read from the source without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        if name in targets and node.value is not None:
            return ast.literal_eval(node.value)
    raise LookupError(f"{path}: no constant {name}")


def health_routes(root: Path) -> set[tuple[str, str]]:
    """(METHOD, path) of every route in the relay's health module."""
    source = root / "cloud/src/bellhop_cloud/api/routes_health.py"
    routes: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and isinstance(decorator.args[0].value, str)
            ):
                routes.add((decorator.func.attr.upper(), decorator.args[0].value))
    return routes


def relay_constants(root: Path) -> dict[str, Any]:
    cloud = root / "cloud/src/bellhop_cloud"
    endpoint = cloud / "bridge/endpoint.py"
    return {
        "graceful_s": module_constant(cloud / "server.py", "GRACEFUL_SHUTDOWN_S"),
        "close_all_s": module_constant(endpoint, "CLOSE_ALL_S"),
        "backlog": module_constant(endpoint, "BACKLOG"),
        "bridge_path": module_constant(endpoint, "BRIDGE_PATH"),
    }


def default(field: str) -> Any:
    return RelayConfig.model_fields[field].default


@cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def bellhop_problems(args: list[str], where: str) -> list[str]:
    """`bellhop ARGS` must be a command the real parser accepts (nothing runs)."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parsed = _parser().parse_args(args)
    except SystemExit:
        said = errors.getvalue().strip().splitlines()
        return [f"{where}: bellhop rejects `{shlex.join(args)}`: {said[-1] if said else ''}"]
    if not callable(getattr(parsed, "handler", None)):
        return [f"{where}: `bellhop {shlex.join(args)}` names no command"]
    return []


def option(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE`."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


@contextlib.contextmanager
def bellhop_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Exactly these BELLHOP_CLOUD_* / BELLHOP_EDGE_* variables while a configuration loads."""
    ours = ("BELLHOP_CLOUD_", "BELLHOP_EDGE_")
    saved = {k: v for k, v in os.environ.items() if k.startswith(ours)}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update(saved)


def load_relay(path: Path, env: Mapping[str, str] | None = None) -> RelayConfig | str:
    """The configuration, or why it does not load."""
    with bellhop_environment(env or {}):
        try:
            return load_relay_config(path)
        except RelayConfigError as exc:
            return exc.detail


def load_edge(path: Path) -> EdgeConfig | str:
    with bellhop_environment({}):
        try:
            return load_edge_config(path)
        except EdgeConfigError as exc:
            return str(exc)


def deploy_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "deploy").rglob("*") if p.is_file())


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


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


# -- HAProxy --------------------------------------------------------------------------------
def haproxy_sections(text: str, problems: list[str]) -> dict[str, list[list[str]]]:
    """Sections ("backend relay_rest") and their lines, split into words; comments dropped."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        parts = line.split()
        if not parts:
            continue
        if not line[0].isspace():
            if parts[0] not in HAPROXY_SECTIONS:
                problems.append(f"haproxy.cfg:{number}: unknown section {parts[0]}")
            current = sections.setdefault(" ".join(parts), [])
        elif current is None:
            problems.append(f"haproxy.cfg:{number}: a setting outside any section")
        else:
            current.append(parts)
    return sections


def haproxy_seconds(text: str) -> float:
    match = _HAPROXY_TIME.match(text)
    if match is None:
        raise ValueError(f"not an HAProxy time: {text}")
    return int(match.group(1)) * _HAPROXY_UNITS[match.group(2) or "ms"]


def lines_of(section: list[list[str]], *keyword: str) -> list[list[str]]:
    return [line for line in section if tuple(line[: len(keyword)]) == keyword]


def servers(section: list[list[str]]) -> dict[str, tuple[str, int, list[str]]]:
    """name -> (host, port, the rest of the line)."""
    found = {}
    for line in lines_of(section, "server"):
        host, _, port = line[2].rpartition(":")
        found[line[1]] = (host, int(port), line[3:])
    return found


@dataclass(frozen=True)
class Balancer:
    """What the rest of the deployment must agree with."""

    rest: dict[str, tuple[str, int, list[str]]]  # server name -> host, port, its options
    bridges: dict[str, tuple[str, int, list[str]]]
    cert: str | None
    listen_port: int | None
    rest_backend: str = ""  # the sections' names
    bridge_backend: str = ""


def read_haproxy(root: Path, problems: list[str]) -> Balancer:
    sections = haproxy_sections((root / "deploy/haproxy/haproxy.cfg").read_text(), problems)
    frontends = [s for name, s in sections.items() if name.startswith("frontend ")]
    if len(frontends) != 1:
        problems.append("haproxy.cfg: expected one frontend")
        return Balancer({}, {}, None, None)
    front = frontends[0]
    bridge_path = relay_constants(root)["bridge_path"]
    bridge_acls = {line[1] for line in lines_of(front, "acl") if line[2:] == ["path", bridge_path]}
    bridge_backend = next(
        (line[1] for line in lines_of(front, "use_backend") if line[3:] == sorted(bridge_acls)),
        None,
    )
    rest_backend = next((line[1] for line in lines_of(front, "default_backend")), None)
    if bridge_backend is None or rest_backend is None:
        problems.append(f"haproxy.cfg: {bridge_path} must go to a backend, the rest to another")
        return Balancer({}, {}, None, None)
    rest, bridges = f"backend {rest_backend}", f"backend {bridge_backend}"
    binds = lines_of(front, "bind")
    cert = next((b[b.index("crt") + 1] for b in binds if "ssl" in b and "crt" in b), None)
    port = next((int(b[1].rpartition(":")[2]) for b in binds), None)
    return Balancer(
        servers(sections.get(rest, [])),
        servers(sections.get(bridges, [])),
        cert,
        port,
        rest,
        bridges,
    )


def haproxy_problems(root: Path) -> list[str]:
    problems: list[str] = []
    text = (root / "deploy/haproxy/haproxy.cfg").read_text()
    balancer = read_haproxy(root, problems)
    if problems:
        return problems
    sections = haproxy_sections(text, problems)
    example = load_relay(root / "deploy/relay/relay-node.toml")
    if isinstance(example, str):
        return [*problems, f"deploy/relay/relay-node.toml does not load: {example}"]
    rest_ports = {default("port"), example.port}
    bridge_ports = {default("bridge_port"), example.bridge_port}
    heartbeat = max(default("bridge_heartbeat_s"), example.bridge_heartbeat_s)
    defaults = sections.get("defaults", [])
    front = next(s for name, s in sections.items() if name.startswith("frontend "))
    routes = health_routes(root)

    if balancer.cert is None:
        problems.append("haproxy.cfg: the frontend must terminate TLS (bind ... ssl crt FILE)")
    if ["http-request", "set-header", "X-Forwarded-Proto", "https"] not in front:
        problems.append("haproxy.cfg: the frontend must set X-Forwarded-Proto")
    if not balancer.rest or set(balancer.rest) != set(balancer.bridges):
        problems.append("haproxy.cfg: REST and bridges must go to the same nodes")
    for kind, found, ports in (
        ("REST", balancer.rest, rest_ports),
        ("bridge", balancer.bridges, bridge_ports),
    ):
        for name, (_host, port, extra) in found.items():
            if port not in ports:
                problems.append(f"haproxy.cfg: {kind} server {name} port {port}, not {ports}")
            if "check" not in extra:
                problems.append(f"haproxy.cfg: {kind} server {name} is not health-checked")
            checked = int(extra[extra.index("port") + 1]) if "port" in extra else port
            if checked not in rest_ports:
                problems.append(
                    f"haproxy.cfg: {kind} server {name} is checked on port {checked}, where "
                    "no health route is served (the REST port serves them)"
                )
    for name, section in sections.items():
        if not name.startswith("backend "):
            continue
        sends = lines_of(section, "http-check", "send")
        if ["option", "httpchk"] not in section or not sends:
            problems.append(f"haproxy.cfg: {name} needs option httpchk and http-check send")
        for send in sends:
            method = send[send.index("meth") + 1] if "meth" in send else "OPTIONS"
            uri = send[send.index("uri") + 1] if "uri" in send else "/"
            if (method, uri) not in routes:
                problems.append(f"haproxy.cfg: {name} checks {method} {uri}: not a health route")
    rest_name, bridge_name = balancer.rest_backend, balancer.bridge_backend
    if ["option", "forwardfor"] not in sections.get(rest_name, []):
        problems.append(f"haproxy.cfg: {rest_name} must add X-Forwarded-For")
    if ["balance", "leastconn"] not in sections.get(bridge_name, []):
        problems.append(f"haproxy.cfg: {bridge_name} must balance by leastconn")

    def timeout(name: str, section: str) -> float:
        found = lines_of(sections.get(section, []), "timeout", name)
        found = found or lines_of(defaults, "timeout", name)
        try:
            return haproxy_seconds(found[-1][2]) if found else 0.0
        except ValueError as exc:
            problems.append(f"haproxy.cfg: timeout {name}: {exc}")
            return 0.0

    tunnel = timeout("tunnel", bridge_name)
    if tunnel <= 3 * heartbeat:
        problems.append(
            f"haproxy.cfg: timeout tunnel {tunnel:g} s must exceed three heartbeats "
            f"({3 * heartbeat:g} s)"
        )
    wait = RelayConfig.model_fields.get("command_wait_max_s")
    longest = float(wait.default) if wait is not None else 0.0
    if timeout("server", rest_name) <= longest:
        problems.append(f"haproxy.cfg: timeout server must exceed a command's wait ({longest} s)")
    return problems


# -- Compose and the image ------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


def dockerfile_problems(root: Path) -> list[str]:
    problems: list[str] = []
    path = root / "deploy/compose/Dockerfile"
    instructions = dockerfile_instructions(path.read_text())
    runs = " ".join(rest for kind, rest in instructions if kind == "RUN")
    version = re.search(r"^UV_VERSION=(\S+)$", (root / "run").read_text(), re.MULTILINE)
    if version is None or f"uv=={version.group(1)}" not in runs:
        problems.append("Dockerfile: must install the uv version of ./run (UV_VERSION)")
    if not re.search(r"\buv sync\b[^&;]*--frozen[^&;]*--all-packages", runs):
        problems.append("Dockerfile: must install with `uv sync --frozen --all-packages`")
    entry = [json.loads(rest) for kind, rest in instructions if kind == "ENTRYPOINT"]
    command = [json.loads(rest) for kind, rest in instructions if kind == "CMD"]
    if entry[-1:] != [["bellhop"]]:
        problems.append('Dockerfile: ENTRYPOINT must be ["bellhop"]')
    if command:
        problems += bellhop_problems(command[-1], "Dockerfile CMD")
    exposed = {int(p) for kind, rest in instructions if kind == "EXPOSE" for p in rest.split()}
    if exposed != {default("port"), default("bridge_port")}:
        problems.append(f"Dockerfile: EXPOSE {sorted(exposed)}, not the relay's ports")
    # The build context is the repository: nothing the install needs may be left out of it.
    ignore = path.with_name("Dockerfile.dockerignore")
    patterns = [
        p.strip()
        for p in (ignore.read_text().splitlines() if ignore.is_file() else [])
        if p.strip() and not p.startswith(("#", "!"))
    ]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    needed = [
        "pyproject.toml",
        "uv.lock",
        str(project["project"]["readme"]),
        "src",
        *project["tool"]["uv"]["workspace"]["members"],
    ]
    for pattern in patterns:
        for each in needed:
            if fnmatch.fnmatch(each, pattern) or fnmatch.fnmatch(each, pattern.rstrip("/") + "/*"):
                problems.append(f"Dockerfile.dockerignore: {pattern} leaves out {each}")
    return problems


def compose_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def compose_env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    pairs = (item.partition("=") for item in compose_list(value))
    return {name: setting for name, _, setting in pairs}


def compose_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume, short or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume.get("target", ""))))
        else:
            source, _, rest = str(volume).partition(":")
            mounts.append((source, rest.partition(":")[0]))
    return mounts


def compose_problems(root: Path) -> list[str]:
    problems: list[str] = []
    path = root / "deploy/compose/compose.yaml"
    here = path.parent
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"compose.yaml: not YAML: {exc}"]
    services: dict[str, Any] = data.get("services") or {}
    volumes = set(data.get("volumes") or {})
    image = dockerfile_instructions(here.joinpath("Dockerfile").read_text())
    entrypoint = json.loads(next((r for k, r in image if k == "ENTRYPOINT"), "[]"))
    cmd = json.loads(next((r for k, r in reversed(image) if k == "CMD"), "[]"))
    ours = {s.get("image") for s in services.values() if s.get("build")}
    nodes: dict[str, RelayConfig] = {}
    for name, service in services.items():
        where = f"compose.yaml: {name}"
        build = service.get("build")
        if build is not None:
            context = here / str(build.get("context", "."))
            if not (context / "uv.lock").is_file() or not (context / "pyproject.toml").is_file():
                problems.append(f"{where}: the build context {context} is not the repository")
            dockerfile = context / str(build.get("dockerfile", "Dockerfile"))
            if dockerfile.resolve() != here.joinpath("Dockerfile").resolve():
                problems.append(f"{where}: builds from {dockerfile}, not deploy/compose/Dockerfile")
        for dependency in service.get("depends_on") or []:
            if dependency not in services:
                problems.append(f"{where}: depends on {dependency}, which is no service")
        for variable in compose_env(service.get("environment")):
            problems += variable_problems(variable, where)
        mounted: dict[str, Path] = {}
        for source, target in compose_mounts(service):
            if source.startswith((".", "/")):
                host = (here / source).resolve()
                if not host.exists():
                    problems.append(f"{where}: mounts {source}, which does not exist")
                mounted[target] = host
            elif source not in volumes:
                problems.append(f"{where}: volume {source} is not declared")
        if service.get("image") not in ours or "entrypoint" in service:
            continue
        argv = [*entrypoint[1:], *(compose_list(service.get("command")) or cmd)]
        problems += bellhop_problems(argv, where)
        config = option(argv, "--config")
        if config is None or argv[:1] != ["cloud"]:
            continue
        if config not in mounted:
            problems.append(f"{where}: --config {config} is not a mounted file")
            continue
        env = compose_env(service.get("environment"))
        loaded = load_relay(mounted[config], env)
        if isinstance(loaded, str):
            problems.append(f"{where}: its configuration does not load: {loaded}")
        elif argv[:2] == ["cloud", "run"]:
            nodes[name] = loaded
            problems += scale_out_problems(loaded, where)
    problems += balancer_problems(root, services, nodes)
    return problems


def balancer_problems(
    root: Path, services: dict[str, Any], nodes: dict[str, RelayConfig]
) -> list[str]:
    """The compose nodes and HAProxy agree: names, ports, addresses, files."""
    problems: list[str] = []
    balancer = read_haproxy(root, problems)
    if problems:
        return problems
    haproxy = [n for n, s in services.items() if str(s.get("image", "")).startswith("haproxy")]
    if len(nodes) < 2 or len(haproxy) != 1:
        return [*problems, "compose.yaml: needs two relay nodes and one HAProxy"]
    proxy = services[haproxy[0]]
    mounted = {target: source for source, target in compose_mounts(proxy)}
    cfg = mounted.get("/usr/local/etc/haproxy/haproxy.cfg", "")
    if (root / "deploy/compose" / cfg).resolve() != (root / "deploy/haproxy/haproxy.cfg").resolve():
        problems.append("compose.yaml: HAProxy must run deploy/haproxy/haproxy.cfg")
    if balancer.cert is not None and str(Path(balancer.cert).parent) not in mounted:
        problems.append(f"compose.yaml: nothing is mounted where HAProxy reads {balancer.cert}")
    names = sorted(nodes)
    hosts = sorted({host for host, _, _ in balancer.rest.values()})
    if hosts != names:
        problems.append(f"compose.yaml: HAProxy's servers {hosts} are not the nodes {names}")
    ids = [node.node_id for node in nodes.values()]
    if len(set(ids)) != len(ids):
        problems.append(f"compose.yaml: node_id must differ between nodes: {ids}")
    address = (proxy.get("networks") or {}).get("default", {}).get("ipv4_address")
    published = {
        int(p.rpartition(":")[2]): int(p.split(":")[-2])
        for p in compose_list(proxy.get("ports"))
        if p.count(":") >= 1
    }
    for name, node in nodes.items():
        if node.host in {"127.0.0.1", "localhost", "::1"}:
            problems.append(f"compose.yaml: {name} listens on {node.host}: HAProxy cannot reach")
        for _host, port, _ in balancer.rest.values():
            if port != node.port:
                problems.append(f"compose.yaml: REST goes to {port}, {name} serves {node.port}")
        for _host, port, _ in balancer.bridges.values():
            if port != node.bridge_port:
                problems.append(
                    f"compose.yaml: bridges go to {port}, {name} serves {node.bridge_port}"
                )
        trusted = [ipaddress.ip_network(n) for n in node.trusted_proxies]
        if address is None or not any(ipaddress.ip_address(address) in n for n in trusted):
            problems.append(f"compose.yaml: {name} does not trust HAProxy's address {address}")
        url = urllib.parse.urlsplit(node.bridge_public_url or "")
        if url.port != published.get(balancer.listen_port or 0):
            problems.append(
                f"compose.yaml: {name}'s bridge_public_url {node.bridge_public_url} is not "
                "HAProxy's published port"
            )
    return problems


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


def coverage_problems(root: Path) -> list[str]:
    return [
        f"{rel(root, path)}: no check covers this kind of file (KNOWN_FILES)"
        for path in deploy_files(root)
        if not any(fnmatch.fnmatch(rel(root, path)[len("deploy/") :], p) for p in KNOWN_FILES)
    ]


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


# -- the checks themselves ------------------------------------------------------------------
def _copy(tmp_path: Path) -> Path:
    """The repository with a private copy of deploy/ (everything else linked)."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != "deploy":
            (root / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / "deploy", root / "deploy")
    return root


Check = Callable[[Path], list[str]]
FAULTS: list[tuple[str, str, str, Check, str]] = [
    (
        "systemd/bellhop-relay@.service",
        "bellhop cloud run --config",
        "bellhop cloud serve --config",
        unit_problems,
        "bellhop rejects",
    ),
    (
        "systemd/bellhop-edge.service",
        "edge run --config",
        "edge run --listen 0.0.0.0 --config",
        unit_problems,
        "unrecognized arguments",
    ),
    (
        "systemd/bellhop-relay@.service",
        "ProtectSystem=strict",
        "ProtectSystem=full",
        unit_problems,
        "ProtectSystem",
    ),
    ("systemd/bellhop-relay@.service", "[Service]", "[Servce]", unit_problems, "unknown section"),
    (
        "systemd/bellhop-relay@.service",
        "TimeoutStopSec=30",
        "TimeoutStopSec=10",
        unit_problems,
        "TimeoutStopSec",
    ),
    (
        "systemd/bellhop-relay@.service",
        "LimitNOFILE=65536",
        "LimitNOFILE=4096",
        unit_problems,
        "LimitNOFILE",
    ),
    (
        "relay/relay-node.toml",
        'bus_backend = "redis"',
        'bus_backends = "redis"',
        config_problems,
        "bus_backends is not a configuration key",
    ),
    (
        "relay/relay-node.toml",
        "BELLHOP_CLOUD_DATABASE_URL=",
        "BELLHOP_CLOUD_DATABASE_URI=",
        config_problems,
        "not a relay setting",
    ),
    (
        "edge/edge.toml",
        "BELLHOP_EDGE_MQTT__PORT",
        "BELLHOP_EDGE_MQTT__PROT",
        config_problems,
        "not a gateway setting",
    ),
    ("edge/edge.toml", "port = 1883", "prot = 1883", config_problems, "does not load"),
    (
        "relay/relay-node.toml",
        "migrate_on_start = false",
        "migrate_on_start = true",
        config_problems,
        "migrate once",
    ),
    (
        "haproxy/haproxy.cfg",
        "relay-2:8081 check",
        "relay-2:8082 check",
        haproxy_problems,
        "port 8082",
    ),
    (
        "haproxy/haproxy.cfg",
        "timeout tunnel 1h",
        "timeout tunnel 30s",
        haproxy_problems,
        "timeout tunnel",
    ),
    (
        "haproxy/haproxy.cfg",
        "balance leastconn",
        "balance roundrobin",
        haproxy_problems,
        "leastconn",
    ),
    (
        "haproxy/haproxy.cfg",
        "uri /readyz ver HTTP/1.1 hdr Host relay\n    http-check expect status 200\n"
        "    server relay-1 relay-1:8081",
        "uri /ready ver HTTP/1.1 hdr Host relay\n    http-check expect status 200\n"
        "    server relay-1 relay-1:8081",
        haproxy_problems,
        "not a health route",
    ),
    (
        "compose/compose.yaml",
        "../relay/relay-node.toml:",
        "../relay/relay-nodes.toml:",
        compose_problems,
        "does not exist",
    ),
    (
        "compose/compose.yaml",
        "BELLHOP_CLOUD_NODE_ID: relay-2",
        "BELLHOP_CLOUD_NODE_ID: relay-1",
        compose_problems,
        "node_id must differ",
    ),
    (
        "compose/compose.yaml",
        "command: [cloud, migrate,",
        "command: [cloud, migrates,",
        compose_problems,
        "bellhop rejects",
    ),
    (
        "compose/compose.yaml",
        "'[\"172.28.0.10\"]'",
        "'[\"172.28.0.11\"]'",
        compose_problems,
        "does not trust",
    ),
    (
        "compose/compose.yaml",
        "BELLHOP_CLOUD_REDIS_URL:",
        "BELLHOP_CLOUD_REDIS_URI:",
        compose_problems,
        "not a relay setting",
    ),
    ("compose/Dockerfile", "uv==0.13.8", "uv==0.13.7", dockerfile_problems, "UV_VERSION"),
    (
        "compose/Dockerfile.dockerignore",
        "\ntests\n",
        "\ntests\ncloud\n",
        dockerfile_problems,
        "leaves out cloud",
    ),
    (
        "sysctl/60-bellhop-relay.conf",
        "somaxconn = 16384",
        "somaxconn = 4096",
        sysctl_problems,
        "backlog",
    ),
    (
        "mosquitto/mosquitto.conf",
        "listener 1883 127.0.0.1",
        "listener 1884 127.0.0.1",
        mosquitto_problems,
        "no listener",
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "after", "check", "expected"),
    FAULTS,
    ids=[f"{name}:{after.splitlines()[0][:30]}" for name, _, after, _, _ in FAULTS],
)
def test_the_checks_find_a_fault(
    tmp_path: Path, name: str, before: str, after: str, check: Check, expected: str
) -> None:
    root = _copy(tmp_path)
    path = root / "deploy" / name
    text = path.read_text()
    assert text.count(before) == 1, f"{before!r} must occur once in {name}"
    path.write_text(text.replace(before, after))
    problems = check(root)
    assert any(expected in p for p in problems), problems


def test_a_file_no_check_covers_is_reported(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "deploy/nginx").mkdir()
    (root / "deploy/nginx/relay.conf").write_text("server {}\n")
    assert coverage_problems(root) == [
        "deploy/nginx/relay.conf: no check covers this kind of file (KNOWN_FILES)"
    ]
