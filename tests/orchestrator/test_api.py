"""The HTTP API against a real Redis: acceptance, validation, auth, status, listing."""

from __future__ import annotations

import json
import uuid

import httpx
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.credentials import load_credentials
from tests.orchestrator.conftest import READ_ONLY

LOGOUT = {
    "subject": {"user_id": "alice", "upn": "alice@example.org", "cas_username": "alice"},
    "targets": ["m365", "ent"],
    "sso_session": {
        "tgt": "TGT-1-secret-value",
        "service_tickets": [{"service": "http://127.0.0.1:9/esper/", "ticket": "ST-1-abc"}],
    },
}


async def stream_len(redis: Redis, name: str) -> int:
    return int(await redis.xlen(name)) if await redis.exists(name) else 0


async def test_logout_is_accepted_durably_with_its_event(client: httpx.AsyncClient, redis: Redis):
    resp = await client.post("/v1/logouts", json=LOGOUT)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    rid = body["request_id"]
    assert resp.headers["location"] == f"/v1/requests/{rid}"
    assert await redis.exists(f"sortie:req:{{{rid}}}")
    entries = await redis.xrange(streams.LOGOUT_REQUESTED)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"request_id"].decode() == rid
    event = json.loads(fields[b"data"])
    assert event["type"] == "logout.requested"
    # The credentials never go on a stream: the ent-worker alone reads
    # them from the request's credentials key, written in the same atomic step.
    assert event["sso_session"] is None and event["sso_session_stored"] is True
    assert b"TGT-1-secret-value" not in entries[0][1][b"data"]
    assert b"ST-1-abc" not in entries[0][1][b"data"]
    stored = await load_credentials(redis, rid)
    assert stored is not None and stored.tgt == "TGT-1-secret-value"
    assert stored.service_tickets[0].ticket == "ST-1-abc"

    status = await client.get(f"/v1/requests/{rid}")
    assert status.status_code == 200
    view = status.json()
    assert view["status"] == "in_progress"
    assert set(view["services"]) == {"m365", "ent"}
    assert "TGT-1-secret-value" not in status.text  # a credential is never echoed


async def test_bad_input_gets_problem_json_and_publishes_nothing(
    client: httpx.AsyncClient, redis: Redis
):
    cases = [
        ({**LOGOUT, "unexpected": 1}, 422, "unexpected"),
        ({"targets": ["m365"]}, 422, "subject"),
        ({**LOGOUT, "targets": ["fax"]}, 422, "targets"),
        ({**LOGOUT, "subject": {"user_id": ""}}, 422, "user_id"),
        ({**LOGOUT, "sso_session": {"tgt": "not-a-tgt"}}, 422, "tgt"),
    ]
    for body, status, word in cases:
        resp = await client.post("/v1/logouts", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert word in resp.json()["detail"]
    malformed = await client.post(
        "/v1/logouts", content=b'{"subject": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"] == "application/problem+json"
    wrong_type = await client.post(
        "/v1/logouts", content=json.dumps(LOGOUT), headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    huge = {**LOGOUT, "reason": "x" * 100_000}
    too_big = await client.post("/v1/logouts", json=huge)
    assert too_big.status_code == 413
    assert too_big.json()["status"] == 413
    assert await stream_len(redis, streams.LOGOUT_REQUESTED) == 0
    assert await redis.zcard("sortie:requests") == 0


async def test_auth_and_scopes(client: httpx.AsyncClient, redis: Redis):
    anon = await client.post("/v1/logouts", json=LOGOUT, headers={"Authorization": ""})
    assert anon.status_code == 401
    assert anon.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.post("/v1/logouts", json=LOGOUT, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"
    reader = await client.post(
        "/v1/logouts", json=LOGOUT, headers={"Authorization": f"Bearer {READ_ONLY}"}
    )
    assert reader.status_code == 403
    assert "logout:write" in reader.json()["detail"]
    assert await stream_len(redis, streams.LOGOUT_REQUESTED) == 0
    listing = await client.get("/v1/requests", headers={"Authorization": f"Bearer {READ_ONLY}"})
    assert listing.status_code == 200


async def test_idempotency_key_returns_the_first_request(client: httpx.AsyncClient, redis: Redis):
    headers = {"Idempotency-Key": "ent-logout-42"}
    first = await client.post("/v1/logouts", json=LOGOUT, headers=headers)
    again = await client.post("/v1/logouts", json=LOGOUT, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["request_id"] == again.json()["request_id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert await stream_len(redis, streams.LOGOUT_REQUESTED) == 1


async def test_idempotency_key_reused_with_another_body_is_refused(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    headers = {"Idempotency-Key": "ent-logout-43"}
    first = await client.post("/v1/logouts", json=LOGOUT, headers=headers)
    other = {**LOGOUT, "subject": {"user_id": "somebody-else"}}
    again = await client.post("/v1/logouts", json=other, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 422, again.text
    assert again.headers["content-type"] == "application/problem+json"
    problem = again.json()
    assert "Idempotency-Key" in problem["detail"]
    assert problem["request_id"] == first.json()["request_id"]
    # The same key on another endpoint is another body too; nothing was published.
    offboard = await client.post(
        "/v1/offboardings", json={"subject": {"user_id": "alice"}}, headers=headers
    )
    assert offboard.status_code == 422
    assert await stream_len(redis, streams.LOGOUT_REQUESTED) == 1
    assert await stream_len(redis, streams.OFFBOARD_REQUESTED) == 0
    # The same body again is still a replay.
    replay = await client.post("/v1/logouts", json=LOGOUT, headers=headers)
    assert replay.status_code == 202 and replay.headers.get("idempotent-replayed") == "true"


async def test_listing_newest_first_with_cursor_and_filters(client: httpx.AsyncClient):
    ids = []
    for user in ("u1", "u2", "u1", "u3", "u1"):
        body = {**LOGOUT, "subject": {"user_id": user}}
        ids.append((user, (await client.post("/v1/logouts", json=body)).json()["request_id"]))
    page1 = (await client.get("/v1/requests", params={"limit": 2})).json()
    assert [i["request_id"] for i in page1["items"]] == [ids[4][1], ids[3][1]]
    page2 = (
        await client.get("/v1/requests", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    assert [i["request_id"] for i in page2["items"]] == [ids[2][1], ids[1][1]]
    mine = (await client.get("/v1/requests", params={"subject": "u1"})).json()
    assert [i["request_id"] for i in mine["items"]] == [ids[4][1], ids[2][1], ids[0][1]]
    done = (await client.get("/v1/requests", params={"status": "completed"})).json()
    assert done["items"] == []
    bad = await client.get("/v1/requests", params={"cursor": "!!!"})
    assert bad.status_code == 400
    missing = await client.get(f"/v1/requests/{uuid.uuid4()}")
    assert missing.status_code == 404


async def test_scheduled_offboarding_can_be_cancelled(client: httpx.AsyncClient, redis: Redis):
    body = {"subject": {"user_id": "bob"}, "effective_at": "2099-01-01T00:00:00Z"}
    far = await client.post("/v1/offboardings", json=body)
    assert far.status_code == 422  # absurdly far ahead
    body["effective_at"] = "2027-01-01T00:00:00Z"
    resp = await client.post("/v1/offboardings", json=body)
    assert resp.status_code == 202 and resp.json()["status"] == "scheduled"
    rid = resp.json()["request_id"]
    assert await stream_len(redis, streams.OFFBOARD_REQUESTED) == 0
    cancelled = await client.delete(f"/v1/requests/{rid}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await client.delete(f"/v1/requests/{rid}")
    assert again.status_code == 409
    assert await redis.zscore("sortie:deadlines", rid) is None


async def test_health_and_metrics(client: httpx.AsyncClient):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    for name in (
        "sortie_request_duration_seconds",
        "sortie_requests_total",
        "sortie_requests_in_flight",
        "sortie_revocation_duration_seconds",
        "sortie_step_retries_total",
        "sortie_deadletter_total",
        "sortie_agents_online",
    ):
        assert name in metrics
