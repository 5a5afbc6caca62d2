"""Prometheus configuration, recording and alert rules, checked by the real `promtool`
(Debian's prometheus package), and every service's live /metrics output linted by it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, JOBS, OPS
from tests.support.stacks import use_stack

PROM = DEPLOY / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_config_and_the_rules_it_loads_are_valid(promtool: str, tmp_path: Path) -> None:
    # The file names the rules by their path inside the container: point it here.
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(PROM / "rules" / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = run([promtool, "check", "config", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
    for rules in RULES:
        assert f"Checking {rules}" in out.stdout + out.stderr


def test_every_service_is_scraped() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert set(JOBS) <= jobs


def test_rules_are_valid(promtool: str) -> None:
    assert len(RULES) >= 2
    out = run([promtool, "check", "rules", *map(str, RULES)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    out = run([promtool, "test", "rules", *map(str, tests)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_alerts_of_the_issue_exist_and_each_is_tested_and_in_the_runbook() -> None:
    alerts = {
        rule["alert"]
        for f in RULES
        for group in yaml.safe_load(f.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts == {
        "SortieSSOLogoutSlow",
        "SortieRequestsStuck",
        "SortieDeadLetters",
        "SortieRevocationFailureRatioHigh",
        "SortieAgentsDisappeared",
        "SortieTargetDown",
        "SortieServiceDown",
        "SortieRedisMemoryHigh",
        "SortieSSOSessionsStillAlive",
        "SortieFollowUpPending",
        "SortieVerificationsFailing",
    }
    tested = {
        case["alertname"]
        for f in (PROM / "tests").glob("*.yml")
        for test in yaml.safe_load(f.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == alerts
    runbook = (DEPLOY.parent / "docs" / "runbook.md").read_text()
    for alert in alerts:
        assert f"## {alert}" in runbook


@use_stack(OPS)
@pytest.mark.parametrize("job", JOBS)
def test_live_metrics_pass_promtool(promtool: str, live_metrics: dict[str, str], job: str) -> None:
    text = live_metrics[job]
    assert "# TYPE sortie_revocation_duration_seconds histogram" in text
    out = run([promtool, "check", "metrics"], stdin=text)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


@use_stack(OPS)
def test_live_metrics_observed_the_logout(live_metrics: dict[str, str]) -> None:
    orch = live_metrics["orchestrator"]
    assert 'sortie_requests_total{kind="logout",status="completed"} 1.0' in orch
    assert "sortie_requests_overdue 0.0" in orch
    assert "sortie_agents_online 2.0" in orch
    # The SSO step is labelled service="sso" by the ent worker: the objective's alert reads it.
    ent = live_metrics["ent-worker"]
    assert (
        'sortie_revocation_duration_seconds_count{action="destroy_sso_session",'
        'outcome="succeeded",service="sso"} 1.0'
    ) in ent
    assert 'sortie_deadletter_total{reason="' in live_metrics["m365-worker"]
