"""The whole stack as real processes (the same code as `sortie up`), after one logout and
one malformed message, and the /metrics text of each service, keyed by Prometheus job."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from redis import Redis

from sortie_cli.stack import Stack
from sortie_core import streams
from sortie_simulators.demo import ALICE
from sortie_testkit.waiting import wait_until
from tests.support.stacks import StackVariant

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
JOBS = ("orchestrator", "m365-worker", "ent-worker", "workstation-agent")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/bootstrap-test.sh installs Debian's prometheus"
    return path


def _logout_alice(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=10) as client:
        redis = Redis.from_url(stack.urls["redis"])
        wait_until(
            lambda: redis.sismember("sortie:hosts:alice", "pc-101"),
            15,
            0.1,
            "pc-101 announcing alice's session",
        )
        sso = httpx.get(f"{stack.urls['sim_cas']}/_sim/users/{ALICE.cas_username}/sso").json()
        subject = {
            "user_id": ALICE.cas_username,
            "upn": ALICE.upn,
            "cas_username": ALICE.cas_username,
            "windows_account": ALICE.cas_username,
        }
        resp = client.post("/v1/logouts", json={"subject": subject, "sso_session": sso})
        assert resp.status_code == 202, resp.text
        rid = resp.json()["request_id"]
        wait_until(
            lambda: client.get(f"/v1/requests/{rid}").json()["status"] == "completed",
            30,
            0.1,
            "the logout completing",
        )
        # Something no worker can read: the m365 worker dead-letters it.
        redis.xadd(streams.LOGOUT_REQUESTED, {"type": "logout.requested", "data": "{not json"})
        wait_until(
            lambda: "sortie_deadletter_total{" in httpx.get(stack.urls["m365_metrics"]).text,
            15,
            0.2,
            "the malformed message dead-lettered",
        )
        redis.close()


def _swept(api: str) -> bool:
    """Whether the orchestrator's sweeper set its gauges since the agents announced."""
    return "sortie_agents_online 2.0" in httpx.get(f"{api}/metrics", timeout=10).text


# The sweeper sets its gauges every 0.1 s (5 s by default): awaited, not slept on.
OPS = StackVariant("ops", env={"SORTIE_ORCHESTRATOR_SWEEP_INTERVAL_S": "0.1"})


@pytest.fixture(scope="session")
def live_metrics(whole_stack: Stack) -> dict[str, str]:
    """Needs `@use_stack(OPS)` on the test (the stack's logout and counters are its own)."""
    stack = whole_stack
    _logout_alice(stack)
    wait_until(lambda: _swept(stack.urls["api"]), 10, 0.1, "a sweep after the logout")
    urls = {
        "orchestrator": stack.urls["api"] + "/metrics",
        "m365-worker": stack.urls["m365_metrics"],
        "ent-worker": stack.urls["ent_metrics"],
        "workstation-agent": stack.urls["agent_pc-101_metrics"],
    }
    return {job: httpx.get(url, timeout=10).text for job, url in urls.items()}
