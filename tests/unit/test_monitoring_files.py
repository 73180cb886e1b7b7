"""The shipped monitoring files agree with the code: the alert rules load and pass their own
tests in promtool, every dashboard query is valid PromQL, and every metric name the rules, the
dashboard and the metrics reference use is one FrontDesk exposes (and each one it exposes is
documented). promtool comes from `make promtool`; without it the promtool checks skip locally
and fail in CI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from frontdesk.observability import metrics
from tests.conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "frontdesk-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC_NAME = re.compile(r"\bfrontdesk_[a-z_]+[a-z]\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is required in CI (make promtool)")
        pytest.skip("promtool is not installed (make promtool)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60)


def families() -> dict[str, str]:
    """Every FrontDesk metric family and its type, as `/metrics` would show them."""
    collected = [
        *REGISTRY.collect(),
        *metrics.JobQueueCollector([]).collect(),
        *metrics.ReadinessCollector({}).collect(),
    ]
    return {f.name: f.type for f in collected if f.name.startswith("frontdesk_")}


def sample_names() -> set[str]:
    names = set()
    for name, type_ in families().items():
        names.add(name)
        names.update(name + suffix for suffix in SUFFIXES[type_])
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_alert_rules_load_and_pass_their_tests() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses the expressions of recording rules: one rule per dashboard query, with
    # Grafana's variables replaced by what they expand to.
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "1m")
            .replace("$job", "frontdesk")
            .replace("$instance", ".*"),
        }
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job", "instance"}


@pytest.mark.parametrize("path", [ALERTS, ALERTS_TEST, DASHBOARD, OPERATIONS], ids=lambda p: p.name)
def test_only_metric_names_frontdesk_exposes_are_used(path: Path) -> None:
    unknown = set(METRIC_NAME.findall(path.read_text())) - sample_names()
    assert not unknown, f"{path.name} names metrics FrontDesk does not expose: {sorted(unknown)}"


def test_every_metric_family_is_documented() -> None:
    documented = set(METRIC_NAME.findall(OPERATIONS.read_text()))
    undocumented = {
        name
        for name, type_ in families().items()
        if not {name, *(name + suffix for suffix in SUFFIXES[type_])} & documented
    }
    assert not undocumented, f"missing from the metrics reference: {sorted(undocumented)}"


def test_every_metric_family_appears_on_the_dashboard() -> None:
    used = {name for _, expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    absent = {
        name
        for name, type_ in families().items()
        if not {name + suffix for suffix in SUFFIXES[type_]} & used
    }
    assert not absent, f"not on the dashboard: {sorted(absent)}"
