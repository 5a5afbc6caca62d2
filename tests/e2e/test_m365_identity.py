"""`sortie offboard dave` end to end, as a new user would run it: dave is named by his ENT
id only. With the default configuration nobody can tell who he is in Microsoft 365, so
the request is `partial` (exit 3) with `identity_unresolved`; with an identity mapping
(`sortie up --m365-lookups`) he is found, every M365 step is read back from Graph, and
the request is `completed` with dave blocked in the Graph simulator. A Graph that accepts
a PATCH without applying it is caught by the read-back: `partial`."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from redis import Redis

from sortie_cli.stack import Stack
from sortie_core import streams
from sortie_core.events import RevocationCompleted, decode_event
from sortie_simulators.demo import BOB, DAVE
from tests.support.stacks import StackVariant, use_stack

pytestmark = [
    pytest.mark.e2e,
    use_stack(
        StackVariant("m365-upn"),
        StackVariant(
            "m365-lookups",
            fields={
                "m365_identity_lookups": "employeeId={user_id},onPremisesSamAccountName={user_id}"
            },
        ),
    ),
]

M365_ACTIONS = ["block_sign_in", "reset_password", "revoke_sessions", "disable_mail_protocols"]


def offboard_and_wait(stack: Stack, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SORTIE_WORKDIR": str(stack.workdir), "NO_COLOR": "1"}
    for name in ("SORTIE_API_URL", "SORTIE_TOKEN", "SORTIE_DEV_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "sortie_cli", "offboard", user, *extra, "--wait", "--timeout", "60"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )


def last_request(stack: Stack, user: str) -> dict:
    with httpx.Client(
        base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.token}"}
    ) as client:
        [item, *_] = client.get("/v1/requests", params={"subject": user}).json()["items"]
        return client.get(f"/v1/requests/{item['request_id']}").json()


def m365_report(stack: Stack, request_id: str) -> RevocationCompleted:
    """The worker's own report, with its proof (the API shows outcomes)."""
    redis = Redis.from_url(stack.urls["redis"])
    for _id, fields in redis.xrange(streams.REVOCATION_COMPLETED):
        event = decode_event(fields[b"data"])
        if isinstance(event, RevocationCompleted) and str(event.request_id) == request_id:
            if event.service == "m365":
                return event
    raise AssertionError(f"no m365 report for {request_id}")


def test_offboard_dave_by_ent_id(stack: Stack) -> None:
    mapped = stack.m365_identity_lookups is not None
    run = offboard_and_wait(stack, DAVE.username)
    view = last_request(stack, DAVE.username)
    m365 = {s["action"]: s for s in view["services"]["m365"]["steps"]}
    assert list(m365) == M365_ACTIONS
    graph = httpx.get(f"{stack.urls['sim_graph']}/_sim/users/{DAVE.upn}").json()
    if not mapped:
        assert run.returncode == 3, run.stdout + run.stderr
        assert view["status"] == "partial", view
        for step in m365.values():
            assert step["outcome"] == "failed", step
            assert step["error"]["code"] == "identity_unresolved"
            assert "no upn" in step["error"]["message"]
        assert "identity_unresolved" in run.stdout
        assert graph["accountEnabled"] is True
        return
    assert run.returncode == 0, run.stdout + run.stderr
    assert view["status"] == "completed", view
    report = m365_report(stack, view["request_id"])
    steps = {s.action: s for s in report.steps}
    for step in steps.values():
        assert (step.outcome, step.verification) == ("succeeded", "verified"), step
        assert step.evidence is not None and step.evidence.read_at >= step.started_at
    assert steps["block_sign_in"].evidence.observed == {"accountEnabled": False}  # type: ignore[union-attr]
    # `sortie up` points the Exchange path at the simulator: read back with Get-CASMailbox.
    assert steps["disable_mail_protocols"].evidence.source.startswith("exchange")  # type: ignore[union-attr]
    assert report.discovery is not None
    assert report.discovery.identity == f"{DAVE.upn} ({DAVE.graph_id})"
    assert graph["accountEnabled"] is False
    assert graph["revocation_count"] == 1
    assert set(graph["cas_mailbox"].values()) == {False}


def test_a_graph_that_accepts_a_patch_without_applying_it_ends_partial(stack: Stack) -> None:
    graph = stack.urls["sim_graph"]
    httpx.post(f"{graph}/_sim/drop-writes", json={"drop": ["accountEnabled"]}).raise_for_status()
    try:
        run = offboard_and_wait(stack, BOB.username, "--upn", BOB.upn)
    finally:
        httpx.post(f"{graph}/_sim/drop-writes", json={"drop": []}).raise_for_status()
    assert run.returncode == 3, run.stdout + run.stderr
    view = last_request(stack, BOB.username)
    assert view["status"] == "partial", view
    steps = {s.action: s for s in m365_report(stack, view["request_id"]).steps}
    block = steps.pop("block_sign_in")
    assert (block.outcome, block.verification) == ("failed", "contradicted")
    assert block.error is not None and block.error.code == "not_verified"
    assert block.evidence is not None and block.evidence.observed == {"accountEnabled": True}
    assert all(s.done for s in steps.values())
    assert httpx.get(f"{graph}/_sim/users/{BOB.upn}").json()["accountEnabled"] is True
