"""The deploy/ checks find the faults they are for.

The checks (tests/unit/deploy_checks/) are functions of a repository root that return
problems, so these tests run them on copies of deploy/ with deliberate faults: a check that
cannot fail would prove nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.deploy_checks.balancer import (
    compose_problems,
    dockerfile_problems,
    haproxy_problems,
)
from tests.unit.deploy_checks.common import ROOT, coverage_problems
from tests.unit.deploy_checks.host import mosquitto_problems, sysctl_problems
from tests.unit.deploy_checks.systemd import config_problems, unit_problems


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
