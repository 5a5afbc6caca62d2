"""End to end: the real services as processes, started by the same code as `sortie up`,
against the project's simulators and a redis-server of its own (`up`), then the same tests
on a local Redis Cluster of three primaries started for the stack (`up-cluster`, issue 19),
except the few that only a single redis-server can mean (`single_redis`)."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from redis import Redis

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE
from sortie_testkit.waiting import wait_until
from tests.support.stacks import StackVariant, single_redis, stack_redis, use_stack, wait_view

pytestmark = [
    pytest.mark.e2e,
    use_stack(StackVariant("up"), StackVariant("up-cluster", cluster=True)),
]


def api(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    )


def wait_finished(client: httpx.Client, rid: str, timeout: float = 30) -> dict:
    return wait_view(
        client, rid, lambda v: v["status"] in ("completed", "partial", "failed"), timeout
    )


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_logout_everywhere_completes_with_the_sso_step_last(stack: Stack) -> None:
    cas = stack.urls["sim_cas"]
    sso = httpx.get(f"{cas}/_sim/users/{ALICE.cas_username}/sso").json()
    assert sso["tgt"] and len(sso["service_tickets"]) >= 2
    # The demo agents announce their sessions at start; wait until the orchestrator
    # indexed alice's session on pc-101.
    redis = stack_redis(stack)
    wait_until(
        lambda: redis.sismember("sortie:hosts:alice", "pc-101"),
        15,
        0.1,
        "pc-101's presence reaching the orchestrator",
    )
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
    # Read back through the CAS simulator's ssoSessions actuator, which `sortie up` serves.
    assert sso_steps[0]["verification"] == "verified", sso_steps[0]
    assert sso_steps[0]["evidence"]["observed"]["tgt_known"] is False
    discovery = services["ent"]["discovery"]
    assert (discovery["sso_sessions_found"], discovery["tickets_found"]) == (1, 2)
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
    # The TGT and the tickets never went on a stream (the ent-worker read them from the
    # request's credentials key), and that key went with the request's end.
    secrets_ = [sso["tgt"].encode(), *(t["ticket"].encode() for t in sso["service_tickets"])]
    for name in redis.scan_iter(_type="stream"):
        for _id, fields in redis.xrange(name):
            assert not any(x in b"".join(fields.values()) for x in secrets_), name
    assert not redis.exists(f"sortie:cred:{{{view['request_id']}}}")


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


def unknown_users_logouts(client: httpx.Client, prefix: str, count: int) -> list[dict]:
    """Logouts of users nobody knows, each waited for until it finished."""
    ids = [
        client.post(
            "/v1/logouts",
            json={"subject": {"user_id": f"{prefix}{i}", "upn": f"{prefix}{i}@example.org"}},
        ).json()["request_id"]
        for i in range(count)
    ]
    return [wait_finished(client, rid, timeout=20) for rid in ids]


def test_many_logouts_finish(stack: Stack) -> None:
    with api(stack) as client:
        views = unknown_users_logouts(client, "user", 20)
    # Unknown users: nothing to revoke anywhere, and that is a success.
    assert {v["status"] for v in views} == {"completed"}


@pytest.mark.parametrize(
    ("fault", "code"),
    [("tickets_api_missing", "cas_rest_missing"), ("keep_sessions_on_delete", "not_verified")],
)
def test_a_cas_that_cannot_prove_the_logout_fails_the_request(
    stack: Stack, fault: str, code: str
) -> None:
    cas = stack.urls["sim_cas"]
    tgt = httpx.post(f"{cas}/_sim/sessions", json={"username": "carol"}).json()["tgt"]
    httpx.post(f"{cas}/_sim/config", json={fault: True}).raise_for_status()
    try:
        with api(stack) as client:
            body = {
                "subject": {"user_id": "carol", "cas_username": "carol"},
                "targets": ["ent"],
                "sso_session": {"tgt": tgt},
            }
            resp = client.post("/v1/logouts", json=body)
            assert resp.status_code == 202, resp.text
            view = wait_finished(client, resp.json()["request_id"])
    finally:
        httpx.post(f"{cas}/_sim/config", json={fault: False}).raise_for_status()
    assert view["status"] == "failed", view
    [step] = view["sso"]["steps"]
    assert step["outcome"] == "failed" and step["error"]["code"] == code, step
    assert tgt not in str(view)
    assert any(t["tgt"] == tgt for t in httpx.get(f"{cas}/_sim/tickets").json())


@single_redis(
    "ACL users are those of the redis-server `sortie up` starts; a Cluster's, its operator's"
)
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


@single_redis("FLUSHALL empties one redis-server; a Cluster's node failure is test_cluster.py's")
def test_redis_restarted_empty_then_new_requests_complete_without_restarts(stack: Stack) -> None:
    """Redis data lost (a restart without it, or a failover to an empty replica).
    Every consumer recreates its group, the agents announce themselves again, the ENT
    worker re-publishes its JWKS key; no process is restarted."""
    pids = {p.name: p.popen.pid for p in stack.procs if p.popen}
    redis = Redis.from_url(stack.urls["redis"])
    redis.flushall()
    # The agents' presence is back in the orchestrator's index (its group recreated).
    wait_until(lambda: redis.sismember("sortie:agents", "pc-101"), 20, 0.1, "pc-101 back")
    with api(stack) as client:
        views = unknown_users_logouts(client, "after", 10)
        wait_until(
            lambda: client.get("/.well-known/jwks.json").json().get("keys"),
            40,
            0.2,
            "the JWKS key re-published",
        )
    assert {v["status"] for v in views} == {"completed"}
    assert {p.name: p.popen.pid for p in stack.procs if p.popen} == pids
    assert not stack.dead()
