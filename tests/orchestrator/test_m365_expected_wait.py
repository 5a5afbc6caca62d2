"""A request whose M365 steps wait for the tenant's Graph write quota says how long a write
queued now would wait, as the M365 worker keeps it in Redis (quota.py): against a live
orchestrator over a real redis-server; the test plays the M365 worker's key and reports."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync

from sortie_core import streams
from sortie_core.services import expected_wait_key
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.workers import commands, report, step, until
from tests.support.live import live_orchestrator


@pytest.fixture(scope="module")
def base(server: RedisServer) -> Iterator[str]:
    with live_orchestrator(server, m365_tenant_key="tenant-a") as url:
        yield url


def _m365(api: httpx.Client, rid: str) -> dict[str, object]:
    view: dict[str, object] = api.get(f"/v1/requests/{rid}").json()["services"]["m365"]
    return view


def test_a_pending_m365_step_shows_the_quota_wait(api: httpx.Client, server: RedisServer):
    redis = redis_sync.Redis.from_url(server.url)
    try:
        # Another tenant's queue says nothing about this one.
        redis.set(expected_wait_key("default"), "9.0", ex=60)
        resp = api.post(
            "/v1/logouts", json={"subject": {"user_id": "waits", "upn": "waits@school.example"}}
        )
        assert resp.status_code == 202, resp.text
        rid = resp.json()["request_id"]
        until(lambda: commands(server.url, streams.LOGOUT_REQUESTED, rid))
        assert _m365(api, rid)["expected_wait_s"] is None
        redis.set(expected_wait_key("tenant-a"), "2.500", ex=60)
        assert _m365(api, rid)["state"] == "pending"
        assert _m365(api, rid)["expected_wait_s"] == 2.5
        # Once M365 reported, the request no longer waits for it: nothing is shown.
        report(server.url, rid, "m365", [step("revoke_sessions")])
        until(lambda: _m365(api, rid)["state"] == "reported" or None, what="m365 reported")
        assert _m365(api, rid)["expected_wait_s"] is None
    finally:
        redis.close()
