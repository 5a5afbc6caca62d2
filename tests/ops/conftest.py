"""The whole stack as real processes (the same code as `sortie up`), after one logout and
one malformed message, and the /metrics text of each service, keyed by Prometheus job."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from sortie_cli.stack import Stack
from sortie_core import streams
from sortie_simulators.demo import ALICE

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
        deadline = time.monotonic() + 15
        while not redis.sismember("sortie:hosts:alice", "pc-101"):
            assert time.monotonic() < deadline, "pc-101 never announced alice's session"
            time.sleep(0.1)
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
        deadline = time.monotonic() + 30
        while client.get(f"/v1/requests/{rid}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the logout did not complete"
            time.sleep(0.1)
        # Something no worker can read: the m365 worker dead-letters it.
        redis.xadd(streams.LOGOUT_REQUESTED, {"type": "logout.requested", "data": "{not json"})
        deadline = time.monotonic() + 15
        while "sortie_deadletter_total{" not in httpx.get(stack.urls["m365_metrics"]).text:
            assert time.monotonic() < deadline, "the malformed message was not dead-lettered"
            time.sleep(0.2)
        redis.close()


@pytest.fixture(scope="session")
def live_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    stack = Stack(
        workdir=tmp_path_factory.mktemp("ops-stack"),
        api_port=0,
        base_env={"PATH": "/usr/bin:/bin"},
    )
    stack.plan()
    try:
        stack.start(timeout=90)
        _logout_alice(stack)
        # The orchestrator's sweeper sets its gauges every few seconds.
        time.sleep(6)
        urls = {
            "orchestrator": stack.urls["api"] + "/metrics",
            "m365-worker": stack.urls["m365_metrics"],
            "ent-worker": stack.urls["ent_metrics"],
            "workstation-agent": stack.urls["agent_pc-101_metrics"],
        }
        yield {job: httpx.get(url, timeout=10).text for job, url in urls.items()}
    finally:
        stack.stop()
