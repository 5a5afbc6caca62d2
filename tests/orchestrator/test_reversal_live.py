"""Reversal of an offboarding and its Temporary Access Pass, against a live orchestrator
over a real redis-server; the test plays the workers (tests/orchestrator/workers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_sync

from sortie_core import streams
from sortie_core.sealed import seal
from sortie_orchestrator.profiles import Profiles
from sortie_orchestrator.settings import TokenSpec
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.workers import answer_offboarding, commands, report, step, until
from tests.support.live import ALL, READER, TOKEN, live_orchestrator

OTHER = "live-token-other-writer-0123456789"
PROFILES = Profiles.model_validate(
    {
        "profiles": {
            "two": {
                "phases": [
                    {"actions": ["block_sign_in", "reset_password", "disable_mail_protocols"]},
                    {"after": 3600, "actions": ["remove_licenses"]},
                ]
            }
        }
    }
)
RECORDED = {
    "block_sign_in": {"account_enabled": True},
    "disable_mail_protocols": {"protocols": {"OWAEnabled": True, "PopEnabled": False}},
}


@pytest.fixture(scope="module")
def base(server: RedisServer) -> Iterator[str]:
    tokens = [
        TokenSpec(name="all", token=TOKEN, scopes=ALL),
        TokenSpec(name="other", token=OTHER, scopes=ALL),
        TokenSpec(name="helpdesk", token=READER, scopes=frozenset({"requests:read"})),
    ]
    with live_orchestrator(server, profiles=PROFILES, tokens=tokens) as url:
        yield url


def finished_offboarding(api: httpx.Client, url: str, user: str, recorded: bool = True) -> str:
    resp = api.post(
        "/v1/offboardings",
        json={"subject": {"user_id": user, "upn": f"{user}@lycee.example"}, "profile": "two"},
    )
    rid: str = resp.json()["request_id"]
    steps = [
        step("block_sign_in", RECORDED["block_sign_in"] if recorded else None),
        step("reset_password"),
        step("disable_mail_protocols", RECORDED["disable_mail_protocols"] if recorded else None),
    ]
    answer_offboarding(url, rid, steps)
    until(lambda: api.get(f"/v1/requests/{rid}").json()["status"] == "completed")
    return rid


def reversal_command(url: str, rid: str) -> dict[str, Any]:
    (_, command), *_ = until(lambda: commands(url, streams.REVERSAL_REQUESTED, rid))
    return command


def test_a_reversal_restores_what_the_offboarding_recorded(api: httpx.Client, server: RedisServer):
    original = finished_offboarding(api, server.url, "back.one")
    resp = api.post(f"/v1/requests/{original}:reverse", json={"reason": "hired again"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    rid = body["request_id"]
    assert body["reverses"] == original
    assert body["temporary_access_pass"]["unseal_key"]
    assert (
        body["temporary_access_pass"]["reveal"]
        == f"/v1/requests/{rid}/temporary-access-pass:reveal"
    )
    command = reversal_command(server.url, rid)
    assert command["reverses"] == original
    # Never the password: only what was recorded, per original action.
    assert command["restore"] == RECORDED
    assert command["issue_temporary_access_pass"] is True and command["tap_public_key"]
    assert command["reason"] == "hired again"
    view = api.get(f"/v1/requests/{rid}").json()
    assert view["kind"] == "reversal" and view["reverses"] == original
    assert view["status"] == "in_progress" and view["sso"] is None
    orig = api.get(f"/v1/requests/{original}").json()
    assert orig["reversed_by"] == rid
    # Its later phase (licences in an hour) will not run any more.
    assert orig["phases"][1]["status"] == "cancelled"
    # The unseal key is nowhere in Redis.
    dump = b"".join(
        redis_sync.Redis.from_url(server.url).dump(k) or b""
        for k in redis_sync.Redis.from_url(server.url).keys("*")
    )
    assert body["temporary_access_pass"]["unseal_key"].encode() not in dump


def test_the_pass_is_revealed_once_to_whoever_asked(api: httpx.Client, server: RedisServer):
    original = finished_offboarding(api, server.url, "back.two")
    body = api.post(f"/v1/requests/{original}:reverse", json={}).json()
    rid, tap = body["request_id"], body["temporary_access_pass"]
    early = api.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]})
    assert early.status_code == 409  # not issued yet
    command = reversal_command(server.url, rid)
    secret = "Tap-9f3K-2xQ7"
    report(
        server.url,
        rid,
        "m365",
        [
            step("restore_block_sign_in"),
            step("restore_mail_protocols"),
            step("issue_temporary_access_pass", sealed=seal(command["tap_public_key"], secret)),
        ],
    )
    view = until(
        lambda: (v := api.get(f"/v1/requests/{rid}").json())["status"] == "completed" and v
    )
    assert "sealed" not in json.dumps(view) and secret not in json.dumps(view)
    assert view["temporary_access_pass"]["issued"] is True
    stored = redis_sync.Redis.from_url(server.url).hget(f"sortie:req:{{{rid}}}", "doc")
    assert b'sealed":"' not in stored
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {OTHER}"}) as other:
        assert other.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]}).status_code == 403
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {READER}"}) as r:
        assert r.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]}).status_code == 403
    wrong = api.post(tap["reveal"], json={"unseal_key": "A" * 43})
    assert wrong.status_code == 422
    shown = api.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]})
    assert shown.status_code == 200 and shown.json()["temporary_access_pass"] == secret
    assert shown.headers["cache-control"] == "no-store"
    again = api.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]})
    assert again.status_code == 410
    assert again.headers["content-type"].startswith("application/problem+json")
    revealed = api.get(f"/v1/requests/{rid}").json()
    assert revealed["temporary_access_pass"]["revealed_at"]
    assert any(t["event"] == "temporary_access_pass_revealed" for t in revealed["timeline"])


def test_what_cannot_be_reversed_is_refused(api: httpx.Client, server: RedisServer):
    unknown = api.post("/v1/requests/00000000-0000-4000-8000-000000000000:reverse", json={})
    assert unknown.status_code == 404
    logout = api.post(
        "/v1/logouts", json={"subject": {"user_id": "someone"}, "targets": ["m365"]}
    ).json()["request_id"]
    refused = api.post(f"/v1/requests/{logout}:reverse", json={})
    assert refused.status_code == 409 and "only an offboarding" in refused.json()["detail"]
    running = api.post("/v1/offboardings", json={"subject": {"user_id": "still.running"}}).json()[
        "request_id"
    ]
    assert "finished" in api.post(f"/v1/requests/{running}:reverse", json={}).json()["detail"]
    nothing = finished_offboarding(api, server.url, "nothing.recorded", recorded=False)
    empty = api.post(f"/v1/requests/{nothing}:reverse", json={})
    assert empty.status_code == 409 and "recorded nothing" in empty.json()["detail"]
    assert not commands(server.url, streams.REVERSAL_REQUESTED, nothing)
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {READER}"}) as r:
        assert r.post(f"/v1/requests/{nothing}:reverse", json={}).status_code == 403


def test_a_repeat_with_the_idempotency_key_is_the_same_reversal(
    api: httpx.Client, server: RedisServer
):
    original = finished_offboarding(api, server.url, "back.three")
    key = {"Idempotency-Key": "reverse-back-three"}
    first = api.post(f"/v1/requests/{original}:reverse", json={}, headers=key)
    again = api.post(f"/v1/requests/{original}:reverse", json={}, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.headers["idempotent-replayed"] == "true"
    # The unseal key was given once, in the first answer.
    assert again.json()["temporary_access_pass"] is None
    other = finished_offboarding(api, server.url, "back.four")
    mismatch = api.post(f"/v1/requests/{other}:reverse", json={}, headers=key)
    assert mismatch.status_code == 422  # the key names another reversal
    assert api.get(f"/v1/requests/{other}").json()["reversed_by"] is None
    twice = api.post(f"/v1/requests/{original}:reverse", json={})
    assert twice.status_code == 409 and "already reversed" in twice.json()["detail"]
    assert len(commands(server.url, streams.REVERSAL_REQUESTED, first.json()["request_id"])) == 1
