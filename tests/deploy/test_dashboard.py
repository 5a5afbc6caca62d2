"""The Grafana dashboard and its provisioning, checked without Grafana (not packaged by
Debian): the JSON is well-formed, and every query names only metrics the live services
export (read from their /metrics output), recording rules of deploy/prometheus, or `up`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import DEPLOY, OPS
from tests.support.stacks import use_stack

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sortie.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
# Written by Prometheus itself for each scrape target.
SYNTHETIC = {"up"}
# redis_exporter's gauges (job `redis`, oliver006/redis_exporter in docker-compose.yml).
EXTERNAL = {"redis_memory_used_bytes", "redis_memory_max_bytes"}


def exported(text: str) -> set[str]:
    """Series names a /metrics text declares, with or without a sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def recorded() -> set[str]:
    return {
        rule["record"]
        for f in (DEPLOY / "prometheus" / "rules").glob("*.yml")
        for group in yaml.safe_load(f.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def selectors(expr: str) -> list[tuple[str, str | None]]:
    """(metric name, job it is restricted to) for every vector selector of a query."""
    jobs = dict(re.findall(r'([A-Za-z_:][A-Za-z0-9_:]*)\s*\{[^}]*\bjob="([^"]+)"', expr))
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    found = []
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", expr):
        name, call = m.groups()
        if call or name in KEYWORDS:
            continue
        found.append((name, jobs.get(name)))
    return found


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"]["query"])
        assert m, var
        exprs.append(m.group(1))
    return exprs


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_dashboard_json_is_a_provisionable_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "sortie.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]


def test_dashboard_has_the_panels_of_the_issue(dashboard: dict[str, Any]) -> None:
    used = " ".join(queries(dashboard))
    for metric in (
        "sortie_requests_total",
        "sortie_request_duration_seconds",
        "sortie_revocation_duration_seconds_bucket",
        "sortie_step_retries_total",
        "sortie_requests_in_flight",
        "sortie_deadletter_total",
        "sortie_agents_online",
        "faststream_received_messages_total",
        "faststream_received_processed_messages_duration_seconds_bucket",
    ):
        assert metric in used, metric
    assert any(p["type"] == "heatmap" for p in dashboard["panels"])


def test_selector_parser_finds_metrics_and_jobs() -> None:
    got = selectors(
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{job="x", le!="1"}[5m])))'
        " / on (job) b + max(c offset 5m)"
    )
    assert got == [("a_bucket", "x"), ("b", None), ("c", None)]


@use_stack(OPS)
def test_every_query_names_a_metric_the_services_export(
    dashboard: dict[str, Any], live_metrics: dict[str, str]
) -> None:
    per_job = {job: exported(text) for job, text in live_metrics.items()}
    anywhere = set().union(*per_job.values()) | recorded() | SYNTHETIC | EXTERNAL
    rule_exprs = [
        rule["expr"]
        for f in (DEPLOY / "prometheus" / "rules").glob("*.yml")
        for group in yaml.safe_load(f.read_text())["groups"]
        for rule in group["rules"]
    ]
    checked = 0
    for expr in queries(dashboard) + rule_exprs:
        for name, job in selectors(expr):
            checked += 1
            assert name in anywhere, f"{name!r} in {expr!r} is exported by no service"
            if job in per_job and name not in SYNTHETIC:
                assert name in per_job[job], f"{name!r} is not exported by {job}"
    assert checked >= 30
