"""End to end: a `staff-leaves` offboarding through the real m365-worker (msgraph-sdk over
HTTP) against the Graph simulator, then its reversal: the simulator's state is back to
what the offboarding recorded, and the Temporary Access Pass is shown once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis as redis_sync

from sortie_cli.stack import Stack
from sortie_orchestrator.adapters import doc_codec
from sortie_simulators.demo import ALICE
from tests.support.stacks import StackVariant, use_stack, wait_status

pytestmark = [pytest.mark.e2e, use_stack(StackVariant("leaver"))]
FINISHED = {"completed", "partial", "failed"}


def graph_state(stack: Stack) -> dict[str, Any]:
    """What the offboarding changes and the reversal restores, read from the simulator."""
    graph = stack.urls["sim_graph"]
    user = httpx.get(f"{graph}/_sim/users/{ALICE.upn}").json()
    settings = httpx.get(
        f"{graph}/v1.0/users/{ALICE.upn}/mailboxSettings",
        headers={"Authorization": "Bearer simulator-token"},
    ).json()
    return {
        "accountEnabled": user["accountEnabled"],
        "cas_mailbox": user["cas_mailbox"],
        "automaticRepliesSetting": settings["automaticRepliesSetting"],
    }


def redis_text(url: str) -> str:
    """Every value in Redis as text: strings, hashes (request docs inflated), lists, sets,
    sorted sets and every stream entry."""
    client = redis_sync.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=500):
            kind = client.type(key).decode()
            if kind == "string":
                out.append(client.get(key) or b"")
            elif kind == "hash":
                for field, raw in client.hgetall(key).items():
                    doc = field == b"doc" and raw[:1] == b"\x01"
                    out += [field, doc_codec.decode(raw).model_dump_json().encode() if doc else raw]
            elif kind == "list":
                out += client.lrange(key, 0, -1)
            elif kind == "set":
                out += list(client.smembers(key))
            elif kind == "zset":
                out += client.zrange(key, 0, -1)
            elif kind == "stream":
                for _id, fields in client.xrange(key):
                    out += [*fields.keys(), *fields.values()]
    finally:
        client.close()
    return b"\n".join(out).decode(errors="replace")


def test_staff_leaves_then_reverse_restores_the_recorded_state(stack: Stack) -> None:
    before = graph_state(stack)
    assert before["accountEnabled"] is True
    subject = {"user_id": ALICE.cas_username, "upn": ALICE.upn, "cas_username": ALICE.cas_username}
    with httpx.Client(
        base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    ) as api:
        off = api.post("/v1/offboardings", json={"subject": subject, "profile": "staff-leaves"})
        assert off.status_code == 202, off.text
        original = wait_status(api, off.json()["request_id"], FINISHED, timeout=60)
        assert original["profile"] == "staff-leaves"
        steps = {s["action"]: s for s in original["services"]["m365"]["steps"]}
        assert list(steps)[:4] == [
            "block_sign_in",
            "reset_password",
            "revoke_sessions",
            "disable_mail_protocols",
        ]
        assert steps["block_sign_in"]["done"] and steps["set_auto_reply"]["done"], steps
        during = graph_state(stack)
        assert during["accountEnabled"] is False
        assert not any(during["cas_mailbox"].values())
        assert during["automaticRepliesSetting"]["status"] != "disabled"
        assert original["phases"][1]["status"] == "scheduled"  # licences in 30 days

        rev = api.post(f"/v1/requests/{original['request_id']}:reverse", json={})
        assert rev.status_code == 202, rev.text
        tap = rev.json()["temporary_access_pass"]
        reversal = wait_status(api, rev.json()["request_id"], FINISHED, timeout=60)
        restored = {s["action"]: s for s in reversal["services"]["m365"]["steps"]}
        assert {"restore_block_sign_in", "restore_mail_protocols", "restore_auto_reply"} <= set(
            restored
        )
        assert "restore_reset_password" not in restored
        assert all(restored[a]["done"] for a in ("restore_block_sign_in", "restore_auto_reply"))
        assert restored["issue_temporary_access_pass"]["outcome"] == "succeeded"
        assert graph_state(stack) == before

        shown = api.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]})
        assert shown.status_code == 200, shown.text
        secret = shown.json()["temporary_access_pass"]
        assert len(secret) >= 8 and secret not in str(reversal)
        assert api.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]}).status_code == 410
        assert (
            api.get(f"/v1/requests/{original['request_id']}").json()["phases"][1]["status"]
            == "cancelled"
        )
    logs = "".join(p.read_text(errors="replace") for p in stack.workdir.glob("logs/*.log"))
    assert secret not in logs
    # Nor in Redis: no key, request document or stream entry holds it in clear.
    everything = redis_text(stack.urls["redis"])
    assert str(original["request_id"]) in everything  # the scan reads the requests
    assert secret not in everything
