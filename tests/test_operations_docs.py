"""docs/operations.md and the Grafana dashboard agree: the dashboard is valid JSON that Grafana
imports as-is (a datasource variable, panels with targets) and every query in it names a metric
of the docs' table (whose names the services' tests find in real scrapes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.metrics import documented_metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\b(?:vllm:[a-z_]+|playground_[a-z_]+|http_[a-z_]+|process_[a-z_]+)")
SUFFIXES = ("_bucket", "_count", "_sum")


def _documented_base(name: str, documented: set[str]) -> bool:
    if name in documented:
        return True
    return any(name.endswith(s) and name[: -len(s)] in documented for s in SUFFIXES)


def test_dashboard_loads_and_queries_documented_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    documented = documented_metrics("all", "engine", "sae", "backend")
    assert len(documented) > 30
    queried = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = METRIC.findall(target["expr"])
            assert names, target["expr"]
            for name in names:
                assert _documented_base(name, documented), (panel["title"], name)
                queried.add(name)
    assert any(n.startswith("vllm:") for n in queried)
    assert any(n.startswith("playground_sae_") for n in queried)
    assert any(n.startswith("playground_run_") for n in queried)


def test_alert_queries_name_documented_metrics():
    text = (ROOT / "docs" / "operations.md").read_text()
    block = text.split("## Alerts that matter", 1)[1].split("```promql", 1)[1].split("```", 1)[0]
    documented = documented_metrics("all", "engine", "sae", "backend")
    names = METRIC.findall(block)
    assert len(names) >= 8
    for name in names:
        assert _documented_base(name, documented), name
