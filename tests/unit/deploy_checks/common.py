"""What the deploy/ checks share: the repository's root, the code's own facts, the
argument parser and the configuration loaders.

The relay's constants (stop bounds, backlog, routes) are read from its source with `ast`:
importing the app to read three numbers would cost seconds.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import io
import os
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from bellhop_cloud.config import RelayConfig
from bellhop_cloud.config import load_config as load_relay_config
from bellhop_cloud.errors import ConfigError as RelayConfigError
from bellhop_edge.config import EdgeConfig
from bellhop_edge.config import load_config as load_edge_config
from bellhop_edge.errors import ConfigError as EdgeConfigError

from bellhop_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
# Where the units expect the code: a checkout with its environment (deploy/README.md).
INSTALLED_BELLHOP = "/opt/bellhop/.venv/bin/bellhop"
# Every file in deploy/ is one of these, each checked in this package; a new kind needs a check.
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


def coverage_problems(root: Path) -> list[str]:
    return [
        f"{rel(root, path)}: no check covers this kind of file (KNOWN_FILES)"
        for path in deploy_files(root)
        if not any(fnmatch.fnmatch(rel(root, path)[len("deploy/") :], p) for p in KNOWN_FILES)
    ]
