"""The console's API additions on a real orchestrator and Redis: the retry of a finished
request's failed steps, the preview (the workers' answers read back, or their silence
reported), and the streamed audit export (complete for a day of 1,000 requests)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import (
    Discovery,
    RevocationCompleted,
    SsoLogoutCompleted,
    Subject,
    Target,
    decode_event,
)
from sortie_orchestrator import handlers
from sortie_orchestrator.app import background, create_app
from sortie_orchestrator.settings import TokenSpec
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.conftest import READ_ONLY, TOKEN, settings_for
from tests.orchestrator.statuspage.workers import failed, sits_at, step

SUBJECT = Subject(user_id="alice", upn="alice@school.example", site="0750001A")


async def _partial_logout(app: FastAPI) -> uuid.UUID:
    """A logout of M365 only whose step failed for good: `partial`, nothing followed up."""
    deps: handlers.Deps = app.state.deps
    _, rid = await handlers.accept_logout(
        deps,
        subject=SUBJECT,
        reason="test",
        targets=[Target.M365],
        sso_session=None,
        idempotency_key=None,
        principal="all",
    )
    report = RevocationCompleted(
        request_id=rid, subject=SUBJECT, service="m365", steps=(failed("revoke_sessions"),)
    )
    await handlers.on_revocation(deps, report)
    sso = SsoLogoutCompleted(
        request_id=rid, subject=SUBJECT, steps=(step("destroy_all_sso_sessions"),)
    )
    await handlers.on_sso_completed(deps, sso)
    return rid


async def test_retry_sends_the_failed_steps_again_and_heals(
    orchestrator: FastAPI, client: httpx.AsyncClient, redis: Redis
) -> None:
    rid = await _partial_logout(orchestrator)
    view = (await client.get(f"/v1/requests/{rid}")).json()
    assert view["status"] == "partial" and view["followups"] == {}
    reader = await client.post(
        f"/v1/requests/{rid}:retry", headers={"Authorization": f"Bearer {READ_ONLY}"}
    )
    assert reader.status_code == 403
    before = await redis.xlen(streams.LOGOUT_REQUESTED)
    retried = await client.post(f"/v1/requests/{rid}:retry")
    assert retried.status_code == 200, retried.text
    events = [t["event"] for t in retried.json()["timeline"]]
    assert "retry_requested" in events and "followup_sent" in events
    assert {"event": "retry_requested", "detail": "all"}.items() <= next(
        t for t in retried.json()["timeline"] if t["event"] == "retry_requested"
    ).items()
    assert await redis.xlen(streams.LOGOUT_REQUESTED) == before + 1
    last = (await redis.xrevrange(streams.LOGOUT_REQUESTED, count=1))[0][1]
    command = decode_event(last[b"data"])
    assert command.followup is not None and command.followup.services == ("m365",)
    assert command.followup.actions == ("revoke_sessions",)
    fixed = RevocationCompleted(
        request_id=rid, subject=SUBJECT, service="m365", steps=(step("revoke_sessions"),)
    )
    await handlers.on_revocation(orchestrator.state.deps, fixed)
    healed = (await client.get(f"/v1/requests/{rid}")).json()
    assert healed["status"] == "completed" and healed["healed_at"] is not None
    again = await client.post(f"/v1/requests/{rid}:retry")
    assert again.status_code == 409
    missing = await client.post(f"/v1/requests/{uuid.uuid4()}:retry")
    assert missing.status_code == 404


async def _answer_previews(redis: Redis) -> None:
    """Plays the m365-worker: answers the first preview it sees (the ent-worker stays
    silent)."""
    since = "0-0"
    while True:
        got = await redis.xread({streams.PREVIEW_REQUESTED: since}, block=100)
        for _s, entries in got or []:
            for entry_id, fields in entries:
                since = entry_id
                command = decode_event(fields[b"data"])
                answer = RevocationCompleted(
                    request_id=command.request_id,
                    subject=command.subject,
                    service="m365",
                    steps=(),
                    discovery=Discovery(source="graph", identity="alice@school.example (id-1)"),
                )
                await publish(redis, streams.PREVIEW_ANSWERED, answer)
                return


async def test_preview_reads_the_workers_answers_and_changes_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await sits_at(redis, "pc-101", "alice")
    # The orchestrator indexes the presence on the agent's wake-up.
    await wait_until_async(
        lambda: redis.sismember("sortie:hosts:alice", "pc-101"), what="alice on pc-101"
    )
    # The m365-worker runs (its group exists); the ent-worker never started.
    await redis.xgroup_create(streams.PREVIEW_REQUESTED, streams.GROUP_M365, id="0", mkstream=True)
    worker = asyncio.create_task(_answer_previews(redis))
    body = {"subject": {"user_id": "alice", "upn": "alice@school.example"}}
    resp = await client.post("/v1/offboardings:preview", json=body)
    await worker
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["changes_nothing"] is True
    assert data["services"]["m365"]["discovery"]["identity"].startswith("alice@")
    assert data["services"]["ent"] == {"answered": False, "discovery": None}
    assert [h["host"] for h in data["hosts"]] == ["pc-101"]
    assert list(data["will_do"])[-1] == "sso"
    assert data["will_do"]["workstation:pc-101"] == ["logoff"]
    assert await redis.zcard("sortie:requests") == 0
    assert await redis.xlen(streams.OFFBOARD_REQUESTED) == 0
    reader = await client.post(
        "/v1/offboardings:preview", json=body, headers={"Authorization": f"Bearer {READ_ONLY}"}
    )
    assert reader.status_code == 403


async def test_export_of_a_day_of_1000_requests_is_complete(
    orchestrator: FastAPI, client: httpx.AsyncClient
) -> None:
    deps: handlers.Deps = orchestrator.state.deps
    since = datetime.now(UTC) - timedelta(seconds=1)
    later = datetime.now(UTC) + timedelta(days=2)
    for i in range(1000):
        await handlers.accept_offboard(
            deps,
            subject=Subject(user_id=f"user{i}", site="0750001A" if i % 2 else "0750002B"),
            reason="export test",
            requested_by="hr",
            actions=[],
            effective_at=later,
            idempotency_key=None,
            principal="hr",
        )
    partial = await _partial_logout(orchestrator)
    params = {"since": since.isoformat(), "format": "csv"}
    resp = await client.get("/v1/requests:export", params=params)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len({r["request_id"] for r in rows}) == 1001
    mine = [r for r in rows if r["request_id"] == str(partial)]
    assert {r["action"] for r in mine} == {"revoke_sessions", "destroy_all_sso_sessions"}
    failed = next(r for r in mine if r["action"] == "revoke_sessions")
    assert failed["outcome"] == "failed" and failed["error_code"] == "forbidden"
    assert json.loads(next(r for r in mine if r["service"] == "sso")["evidence"] or "null") is None
    as_json = await client.get("/v1/requests:export", params={**params, "format": "json"})
    items = json.loads(as_json.text)
    assert len(items) == 1001 and {i["status"] for i in items} == {"scheduled", "partial"}
    only = await client.get("/v1/requests:export", params={**params, "status": "partial"})
    assert {r["request_id"] for r in csv.DictReader(io.StringIO(only.text))} == {str(partial)}
    future = {"since": later.isoformat(), "until": (later + timedelta(days=1)).isoformat()}
    empty = await client.get("/v1/requests:export", params=future)
    assert empty.text.count("\n") == 1  # the header only
    too_long = {"since": since.isoformat(), "until": (since + timedelta(days=40)).isoformat()}
    assert (await client.get("/v1/requests:export", params=too_long)).status_code == 422


async def test_stations_of_other_sites_are_invisible_to_a_site_token(
    redis: Redis, redis_server: RedisServer
) -> None:
    site_token = "site-token-lycee-a-0123456789abcd"
    settings = settings_for(
        redis_server,
        tokens=[
            TokenSpec(name="all", token=TOKEN, scopes=frozenset({"workstations:admin"})),
            TokenSpec(
                name="lycee-a",
                token=site_token,
                scopes=frozenset({"workstations:admin"}),
                sites=frozenset({"0750001A"}),
            ),
        ],
        station_sites={"pc-101": "0750001A", "salle-b": "0750002B"},
    )
    app = create_app(settings)
    await sits_at(redis, "pc-101", "alice")
    await sits_at(redis, "pc-201", "bob")  # no site known: only for unrestricted callers
    async with background(app.state.wiring):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {site_token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://o", headers=headers
        ) as client:
            everyone = {"Authorization": f"Bearer {TOKEN}"}

            async def both_indexed() -> bool:  # the orchestrator does on their wake-up
                found = (await client.get("/v1/workstations", headers=everyone)).json()
                return len(found["items"]) == 2

            await wait_until_async(both_indexed, 10, 0.05, "both hosts indexed")
            listed = (await client.get("/v1/workstations")).json()["items"]
            assert [h["host"] for h in listed] == ["pc-101"]
            other = await client.post("/v1/workstations/sessions:end", json={"host": "pc-201"})
            assert other.status_code == 404
            mine = await client.post("/v1/workstations/sessions:end", json={"host": "pc-101"})
            assert mine.status_code == 202, mine.text
