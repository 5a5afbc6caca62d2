"""End to end: the real services as processes, started by the same code as `sortie up`,
against the project's simulators and a redis-server of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from redis import Redis

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("sortie-up")
    s = Stack(workdir=workdir, api_port=0, base_env={"PATH": "/usr/bin:/bin"})
    s.plan()
    try:
        s.start(timeout=90)
        yield s
    finally:
        s.stop()


def api(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    )


def wait_finished(client: httpx.Client, rid: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/v1/requests/{rid}").json()
        if view["status"] in ("completed", "partial", "failed"):
            return view
        time.sleep(0.1)
    raise AssertionError(f"request {rid} did not finish: {view}")


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_logout_everywhere_completes_with_the_sso_step_last(stack: Stack) -> None:
    cas = stack.urls["sim_cas"]
    sso = httpx.get(f"{cas}/_sim/users/{ALICE.cas_username}/sso").json()
    assert sso["tgt"] and len(sso["service_tickets"]) >= 2
    # The demo agents announce their sessions at start; wait until the orchestrator
    # indexed alice's session on pc-101.
    redis = Redis.from_url(stack.urls["redis"])
    deadline = time.monotonic() + 15
    while not redis.sismember("sortie:hosts:alice", "pc-101"):
        assert time.monotonic() < deadline, "pc-101's presence never reached the orchestrator"
        time.sleep(0.1)
    with api(stack) as client:
        body = {
            "subject": {
                "user_id": ALICE.cas_username,
                "upn": ALICE.upn,
                "cas_username": ALICE.cas_username,
                "windows_account": ALICE.cas_username,
            },
            "sso_session": sso,
        }
        started = time.monotonic()
        resp = client.post("/v1/logouts", json=body)
        assert resp.status_code == 202, resp.text
        view = wait_finished(client, resp.json()["request_id"])
        elapsed = time.monotonic() - started
    assert view["status"] == "completed", view
    assert elapsed < 5.0
    services = view["services"]
    assert {"m365", "ent", "workstation:pc-101"} <= set(services)
    assert "workstation:pc-102" not in services  # bob's station, not alice's
    phase1 = [s for svc in services.values() for s in svc["steps"]]
    actions = {s["action"] for s in phase1}
    assert {
        "revoke_sessions",
        "app_logout:esper",
        "app_logout:escada",
        "app_logout:mer",
        "app_logout:ism",
        "logoff",
    } <= actions
    ent_steps = {s["action"]: s for s in services["ent"]["steps"]}
    # One step per application, each with its own outcome and timing.
    for app in ("esper", "escada", "mer", "ism"):
        step = ent_steps[f"app_logout:{app}"]
        assert step["outcome"] == "succeeded", step
        assert step["attempts"] >= 1 and step["duration_seconds"] >= 0
    sso_steps = view["sso"]["steps"]
    assert [s["action"] for s in sso_steps] == ["destroy_sso_session"]
    assert sso_steps[0]["outcome"] == "succeeded"
    last_phase1 = max(ts(s["finished_at"]) for s in phase1)
    assert ts(sso_steps[0]["started_at"]) >= last_phase1
    for step in phase1 + sso_steps:
        assert step["duration_seconds"] >= 0
        assert step["attempts"] >= (0 if step["outcome"] == "skipped" else 1), step

    # What the simulated systems saw, in their own clocks.
    graph = httpx.get(f"{stack.urls['sim_graph']}/_sim/users/{ALICE.upn}").json()
    assert graph["revocation_count"] >= 1
    received = httpx.get(f"{stack.urls['sim_entapps']}/_sim/received").json()
    app_logouts = [r for r in received if r["accepted"] and r["user"] == ALICE.cas_username]
    assert {r["app"] for r in app_logouts} >= {"esper", "escada", "mer", "ism"}
    # The ism simulator accepted the logout token after checking its signature against
    # the orchestrator's JWKS, which publishes the ENT worker's public key only.
    jwks = httpx.get(f"{stack.urls['api']}/.well-known/jwks.json").json()
    assert len(jwks["keys"]) == 1
    assert jwks["keys"][0]["kty"] == "EC" and "d" not in jwks["keys"][0]
    cas_events = httpx.get(f"{cas}/_sim/events").json()
    tgt_deleted = [e for e in cas_events if e["what"] == "tgt_deleted"]
    assert tgt_deleted, cas_events
    assert max(r["monotonic"] for r in app_logouts) < tgt_deleted[0]["monotonic"]
    tickets = httpx.get(f"{cas}/_sim/tickets").json()
    assert all(t.get("username", t.get("user")) != ALICE.cas_username for t in tickets)
    sessions = httpx.get(f"{stack.urls['sim_workstations']}/hosts/pc-101/sessions").json()
    assert all(s["user"] != ALICE.cas_username for s in sessions)


def test_metrics_were_observed(stack: Stack) -> None:
    with api(stack) as client:
        orch = client.get("/metrics").text
    assert 'sortie_request_duration_seconds_count{kind="logout",status="completed"}' in orch
    assert 'sortie_requests_total{kind="logout",status="completed"}' in orch
    m365 = httpx.get(stack.urls["m365_metrics"]).text
    assert 'sortie_revocation_duration_seconds_count{action="revoke_sessions"' in m365
    ent = httpx.get(stack.urls["ent_metrics"]).text
    assert 'action="destroy_sso_session"' in ent


def test_bad_input_is_refused_and_changes_nothing(stack: Stack) -> None:
    with api(stack) as client:
        before = client.get("/v1/requests", params={"limit": 200}).json()["items"]
        bad = [
            client.post("/v1/logouts", json={"subject": {"user_id": "x"}, "bogus": 1}),
            client.post("/v1/logouts", json={"reason": "no subject"}),
            client.post(
                "/v1/logouts", content=b"x" * 200_000, headers={"content-type": "application/json"}
            ),
            client.post(
                "/v1/logouts",
                json={"subject": {"user_id": "x"}},
                headers={"Authorization": "Bearer wrong"},
            ),
        ]
        for resp in bad:
            assert 400 <= resp.status_code < 500
            assert resp.headers["content-type"] == "application/problem+json"
        after = client.get("/v1/requests", params={"limit": 200}).json()["items"]
    assert len(after) == len(before)


def test_many_logouts_finish(stack: Stack) -> None:
    with api(stack) as client:
        ids = [
            client.post(
                "/v1/logouts",
                json={"subject": {"user_id": f"user{i}", "upn": f"nobody{i}@example.org"}},
            ).json()["request_id"]
            for i in range(20)
        ]
        views = [wait_finished(client, rid) for rid in ids]
    # Unknown users: nothing to revoke anywhere, and that is a success.
    assert {v["status"] for v in views} == {"completed"}


def test_redis_refuses_anonymous_clients_and_each_process_has_its_own_user(stack: Stack) -> None:
    from urllib.parse import urlsplit

    from redis.exceptions import AuthenticationError

    port = urlsplit(stack.urls["redis"]).port
    anonymous = Redis(host="127.0.0.1", port=port)
    with pytest.raises(AuthenticationError):
        anonymous.get("sortie:agents")
    anonymous.close()
    admin = Redis.from_url(stack.urls["redis"])
    users = {c["user"] for c in admin.client_list()}
    admin.close()
    assert {
        "sortie-orchestrator",
        "sortie-m365-worker",
        "sortie-ent-worker",
        "sortie-agent-pc-101",
        "sortie-agent-pc-102",
    } <= users
    assert "default" not in users
    for proc in stack.procs:
        assert "NOPERM" not in proc.log_tail(10_000), proc.name
