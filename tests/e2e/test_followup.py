"""Follow-up delivery end to end: a target down past the deadline is not given up. The
real processes of `sortie up`, with short deadlines so that the story fits in seconds."""

from __future__ import annotations

import httpx
import pytest

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE, DEMO_CAS_APPS, demo_service_url
from tests.support.stacks import StackVariant, use_stack, wait_status, wait_view

FAST = {
    "SORTIE_ORCHESTRATOR_PHASE1_TIMEOUT_S": "2",
    "SORTIE_ORCHESTRATOR_FOLLOWUP_BASE_S": "0.5",
    "SORTIE_ORCHESTRATOR_FOLLOWUP_MAX_S": "1",
    "SORTIE_ENT_STEP_MAX_ATTEMPTS": "2",
    "SORTIE_ENT_STEP_BACKOFF_MAX_S": "0.1",
}

pytestmark = [pytest.mark.e2e, use_stack(StackVariant("followup", env=FAST))]


def test_an_application_down_past_the_deadline_is_logged_out_when_it_returns(
    stack: Stack,
) -> None:
    apps = stack.urls["sim_entapps"]
    httpx.post(f"{apps}/_sim/config", json={"fail_apps": ["mer"]}).raise_for_status()
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=10) as client:
        subject = {"user_id": ALICE.cas_username, "cas_username": ALICE.cas_username}
        resp = client.post("/v1/logouts", json={"subject": subject, "targets": ["ent"]})
        assert resp.status_code == 202, resp.text
        rid = resp.json()["request_id"]
        partial = wait_status(client, rid, {"partial", "failed", "completed"})
        assert partial["status"] == "partial", partial
        assert "ent" in partial["followups"], partial
        mer = {s["action"]: s for s in partial["services"]["ent"]["steps"]}["app_logout:mer"]
        assert mer["outcome"] == "failed" and mer["error"]["retryable"]
        # The SSO logout was not held back by the dead application.
        assert partial["sso"]["state"] == "reported"
        # It stays down a while: the follow-ups keep trying and the request says so.
        still = wait_view(
            client, rid, lambda v: v["followups"].get("ent", {}).get("attempt", 0) >= 2
        )
        assert still["status"] == "partial"
        httpx.post(f"{apps}/_sim/config", json={"fail_apps": []}).raise_for_status()
        healed = wait_status(client, rid, {"completed"})
    assert healed["healed_at"] is not None and healed["followups"] == {}
    steps = {s["action"]: s for s in healed["services"]["ent"]["steps"]}
    assert steps["app_logout:mer"]["outcome"] == "succeeded"
    received = httpx.get(f"{apps}/_sim/received").json()
    delivered = [r for r in received if r["app"] == "mer" and r["accepted"]]
    assert delivered and delivered[-1]["user"] == ALICE.cas_username


def test_a_cas_down_then_back_ends_the_applications_then_the_sso_session(stack: Stack) -> None:
    """While the CAS is down neither its tickets nor the session can be reached; when it is
    back the applications are logged out first, from the tickets it lists, then the SSO
    session: had the session gone first, the CAS would have forgotten the tickets."""
    cas, apps = stack.urls["sim_cas"], stack.urls["sim_entapps"]
    services = [demo_service_url(apps, app) for app in DEMO_CAS_APPS]
    session = httpx.post(f"{cas}/_sim/sessions", json={"username": "camille", "services": services})
    session.raise_for_status()
    httpx.post(f"{cas}/_sim/config", json={"down": True}).raise_for_status()
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=10) as client:
            subject = {"user_id": "camille", "cas_username": "camille"}
            resp = client.post("/v1/logouts", json={"subject": subject, "targets": ["ent"]})
            assert resp.status_code == 202, resp.text
            rid = resp.json()["request_id"]
            down = wait_status(client, rid, {"partial", "failed", "completed"})
            assert down["status"] == "failed", down  # the SSO session may still be alive
            # The applications wait for the SSO follow-up: it ends them first.
            assert "sso" in down["followups"], down
            httpx.post(f"{cas}/_sim/config", json={"down": False}).raise_for_status()
            healed = wait_status(client, rid, {"completed"})
    finally:
        httpx.post(f"{cas}/_sim/config", json={"down": False})
    assert healed["healed_at"] is not None and healed["followups"] == {}
    ent = {s["action"]: s for s in healed["services"]["ent"]["steps"]}
    assert all(ent[f"app_logout:{app}"]["outcome"] == "succeeded" for app in DEMO_CAS_APPS)
    assert httpx.get(f"{cas}/_sim/users/camille/sso").status_code == 404  # no live session
    received = httpx.get(f"{apps}/_sim/received").json()
    slo = {
        r["app"]
        for r in received
        if r["user"] == "camille" and r["accepted"] and r["session_index"] is not None
    }
    assert slo == set(DEMO_CAS_APPS)
