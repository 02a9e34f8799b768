"""HAProxy in front of the relay nodes, the Compose files and the image they build."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import shlex
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from bellhop_cloud.config import RelayConfig

from tests.unit.deploy_checks.common import (
    bellhop_problems,
    default,
    health_routes,
    load_relay,
    option,
    relay_constants,
)
from tests.unit.deploy_checks.systemd import scale_out_problems, variable_problems

HAPROXY_SECTIONS = frozenset(
    {"global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist"}
)
_HAPROXY_TIME = re.compile(r"^(\d+)(us|ms|s|m|h|d)?$")
_HAPROXY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


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
