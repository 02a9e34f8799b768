"""deploy/grafana/ agrees with what Bellhop really exposes and writes.

- Each dashboard is a Grafana dashboard: uid, title, schema version, panels with unique ids
  inside the 24-column grid, targets with unique refIds on a provisioned data source.
- Every PromQL expression names only metrics the gateway's or the relay's registry exposes
  (collected in-process from `EdgeMetrics` and `RelayMetrics`, with the `_total`, `_bucket`...
  suffixes their types add), and names at least one.
- Every Flux query names a measurement, and only the ones deploy/README.md documents for the
  InfluxDB sink (`telemetry`, `device_event`); device events by kinds that exist.
- Every `$variable` is a built-in or defined in the dashboard's templating, before its use.
- The provisioning files parse, define the data sources the dashboards use, take their values
  from variables deploy/README.md sets, and load dashboards from where it installs them.

The checks return problems, so the last test runs them on a broken dashboard: a check that
cannot fail would prove nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from bellhop_cloud.metrics import RelayMetrics
from bellhop_devices.messages import EventKind
from bellhop_edge.metrics import EdgeMetrics
from prometheus_client import CollectorRegistry

from tests.support.edge_metrics import StandInGateway

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
README = ROOT / "deploy" / "README.md"
# What the InfluxDB sink writes (deploy/README.md, "What the hotel dashboard reads").
MEASUREMENTS = frozenset({"telemetry", "device_event"})
EVENTS = frozenset({*(k.value for k in EventKind), "connectivity", "alert"})
# The names each type of metric family is exposed under, beside its own.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "stateset": ("",),
    "unknown": ("",),
}
_METRIC = re.compile(r"(?<![\w:])((?:bellhop|process|python)_[a-z0-9_]+)")
_MEASUREMENT = re.compile(r"""\br(?:\._measurement|\["_measurement"\])\s*==\s*"([^"]*)\"""")
_EVENT = re.compile(r"""\br(?:\.event|\["event"\])\s*==\s*"([^"]*)\"""")
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?:[:.][^}]*)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")


# -- what Bellhop exposes ----------------------------------------------------------------------
def exposed_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def metric_names() -> frozenset[str]:
    edge = exposed_names(EdgeMetrics(StandInGateway()).registry)
    relay = exposed_names(RelayMetrics().registry)
    assert "bellhop_edge_messages_accepted_total" in edge
    assert "bellhop_edge_command_seconds_bucket" in edge
    assert "bellhop_cloud_http_requests_total" in relay
    return frozenset(edge | relay)


# -- reading the dashboards ----------------------------------------------------------------------
def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def targets(board: dict[str, Any]) -> Iterator[tuple[str, str | None, str]]:
    """(where, data source type, query) of every query, the variables' included."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            query = target.get("expr") if "expr" in target else target.get("query", "")
            where = f"panel {panel.get('title')!r} {target.get('refId')}"
            yield where, source.get("type"), str(query)
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query", "")
            text = query.get("query", "") if isinstance(query, dict) else query
            source = (variable.get("datasource") or {}).get("type")
            yield f"variable {variable.get('name')}", source, str(text)


def provisioned_sources() -> dict[str, str]:
    """uid -> type of every data source the provisioning defines."""
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/bellhop.yaml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


# -- the checks -------------------------------------------------------------------------------
def structure_problems(name: str, board: dict[str, Any], sources: dict[str, str]) -> list[str]:
    problems = [
        f"{name}: {key} missing"
        for key in ("uid", "title", "panels", "templating")
        if key not in board
    ]
    if not isinstance(board.get("schemaVersion"), int):
        problems.append(f"{name}: schemaVersion must be a number")
    ids = [panel.get("id") for panel in panels(board)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{name}: panel ids must be present and unique: {ids}")
    for panel in panels(board):
        where = f"{name}: panel {panel.get('title')!r}"
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "xywh") or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: gridPos must fit the 24-column grid: {grid}")
        if not panel.get("type") or not panel.get("title"):
            problems.append(f"{where}: needs a type and a title")
        if panel.get("type") == "row":
            continue
        refs = [t.get("refId") for t in panel.get("targets", [])]
        if not refs or len(refs) != len(set(refs)):
            problems.append(f"{where}: needs targets with unique refIds: {refs}")
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if sources.get(str(source.get("uid"))) != source.get("type"):
                problems.append(f"{where}: data source {source} is not provisioned")
    return problems


def query_problems(name: str, board: dict[str, Any], metrics: frozenset[str]) -> list[str]:
    problems: list[str] = []
    for where, kind, query in targets(board):
        if kind == "prometheus":
            named = _METRIC.findall(query)
            unknown = sorted(set(named) - metrics)
            if not named or unknown:
                problems.append(f"{name}: {where}: metrics not exposed: {unknown or query}")
        elif kind == "influxdb":
            measurements = _MEASUREMENT.findall(query)
            wrong = sorted(set(measurements) - MEASUREMENTS)
            if not measurements or wrong:
                problems.append(f"{name}: {where}: not a documented measurement: {wrong or query}")
            for event in sorted(set(_EVENT.findall(query)) - EVENTS):
                problems.append(f"{name}: {where}: no such device event: {event}")
        else:
            problems.append(f"{name}: {where}: unknown data source type {kind}")
    return problems


def _used(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE.findall(text)} - {""}


def variable_problems(name: str, board: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    defined: list[str] = []
    for variable in board.get("templating", {}).get("list", []):
        query = json.dumps(variable.get("query", ""))
        early = sorted(v for v in _used(query) if not v.startswith("__") and v not in defined)
        if early:
            problems.append(
                f"{name}: variable {variable.get('name')} uses {early} before they exist"
            )
        defined.append(variable.get("name", ""))
    used = _used(json.dumps(board.get("panels", [])))
    for variable in sorted(v for v in used if not v.startswith("__") and v not in defined):
        problems.append(f"{name}: ${variable} is not defined in templating")
    return problems


# -- the repository ---------------------------------------------------------------------------
def test_both_dashboards_exist() -> None:
    assert {p.name for p in dashboard_files()} >= {"hotel.json", "fleet.json"}


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_a_dashboard_is_sound(path: Path, metric_names: frozenset[str]) -> None:
    board = json.loads(path.read_text())
    problems = [
        *structure_problems(path.name, board, provisioned_sources()),
        *query_problems(path.name, board, metric_names),
        *variable_problems(path.name, board),
    ]
    assert not problems, "\n".join(problems)


def test_dashboards_have_distinct_uids() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids))


def test_the_measurements_are_documented_for_the_sink() -> None:
    readme = README.read_text()
    for measurement in MEASUREMENTS:
        assert f"| `{measurement}` |" in readme, f"deploy/README.md does not describe {measurement}"


def test_data_sources_are_provisioned_from_the_documented_environment() -> None:
    text = (GRAFANA / "provisioning/datasources/bellhop.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["apiVersion"] == 1
    assert sorted(provisioned_sources().values()) == ["influxdb", "prometheus"]
    readme = README.read_text()
    for variable in sorted(set(re.findall(r"\$\{(\w+)\}", text))):
        assert f"\n{variable}=" in readme, f"deploy/README.md does not set {variable} for Grafana"


def test_the_dashboard_provider_loads_the_installed_directory() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/bellhop.yaml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/")
    # deploy/README.md copies the repository's dashboards there.
    assert f"grafana/dashboards/*.json {path.rstrip('/')}/" in README.read_text()


# -- the checks themselves ----------------------------------------------------------------------
def test_the_checks_find_faults(metric_names: frozenset[str]) -> None:
    influx = {"type": "influxdb", "uid": "bellhop-influxdb"}
    prometheus = {"type": "prometheus", "uid": "bellhop-prometheus"}
    board: dict[str, Any] = {
        "uid": "x",
        "title": "x",
        "schemaVersion": 39,
        "templating": {"list": []},
        "panels": [
            {
                "id": 1,
                "type": "timeseries",
                "title": "p",
                "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                "targets": [
                    {"refId": "A", "datasource": prometheus, "expr": "rate(bellhop_edge_nope[5m])"},
                    {
                        "refId": "B",
                        "datasource": influx,
                        "query": 'from(bucket: "b") |> filter(fn: (r) => r._measurement == "temp"'
                        ' and r.event == "fire" and r.room == "${room}")',
                    },
                ],
            }
        ],
    }
    assert query_problems("b", board, metric_names) == [
        "b: panel 'p' A: metrics not exposed: ['bellhop_edge_nope']",
        "b: panel 'p' B: not a documented measurement: ['temp']",
        "b: panel 'p' B: no such device event: fire",
    ]
    assert variable_problems("b", board) == ["b: $room is not defined in templating"]
    assert structure_problems("b", board, provisioned_sources()) == []
    board["panels"][0]["gridPos"]["x"] = 16
    board["panels"][0]["targets"][1]["datasource"] = {"type": "influxdb", "uid": "other"}
    assert len(structure_problems("b", board, provisioned_sources())) == 2
