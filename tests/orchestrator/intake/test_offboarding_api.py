"""`/v1/offboardings` and `/v1/requests` over real HTTP: scheduling that survives a restart
and fires on time, idempotency, filters and pagination, and bad input refused with
problem+json without changing anything."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until
from tests.support.live import READER, TOKEN, live_orchestrator

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_orchestrator() as url:
        yield url


@pytest.fixture
def api(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers=AUTH, timeout=10) as c:
        yield c


def body(user: str, **extra: object) -> dict[str, object]:
    return {"subject": {"user_id": user, "upn": f"{user}@lycee.example"}, **extra}


def everything(api: httpx.Client) -> list[str]:
    return [i["request_id"] for i in api.get("/v1/requests", params={"limit": 200}).json()["items"]]


def test_a_scheduled_offboarding_survives_a_restart_and_fires_on_time() -> None:
    redis = RedisServer().start()
    try:
        effective = datetime.now(UTC) + timedelta(seconds=3)
        with live_orchestrator(redis) as url:
            resp = httpx.post(
                f"{url}/v1/offboardings",
                json=body("fmercier", effective_at=effective.isoformat()),
                headers=AUTH,
            )
            assert resp.status_code == 202 and resp.json()["status"] == "scheduled"
            rid = resp.json()["request_id"]
        # The orchestrator is gone; a new one (same Redis) takes over the schedule.
        with live_orchestrator(redis) as url:

            def started() -> dict | None:
                view = httpx.get(f"{url}/v1/requests/{rid}", headers=AUTH).json()
                return view if view["status"] != "scheduled" else None

            view = wait_until(started, 10, 0.05, "the schedule taken over")
        assert view["status"] != "scheduled"
        started = datetime.fromisoformat(view["started_at"])
        assert timedelta(0) <= started - effective < timedelta(seconds=1)
    finally:
        redis.cleanup()


def test_an_effective_at_in_the_past_means_now(api: httpx.Client) -> None:
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    resp = api.post("/v1/offboardings", json=body("gpetit", effective_at=past))
    assert resp.status_code == 202 and resp.json()["status"] == "accepted"
    view = api.get(resp.headers["location"]).json()
    assert view["status"] in ("in_progress", "sso_logout", "failed", "partial", "completed")
    assert view["started_at"] is not None


def test_idempotency_key_returns_the_first_request_per_token(base: str, api: httpx.Client) -> None:
    key = {"Idempotency-Key": "hr-batch-2027-06-30-row-17"}
    first = api.post("/v1/offboardings", json=body("hlambert"), headers=key)
    again = api.post("/v1/offboardings", json=body("hlambert", reason="second try"), headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # The same key for another person is another request: refused, not silently replayed.
    other = api.post("/v1/offboardings", json=body("mdurand"), headers=key)
    assert other.status_code == 422 and other.json()["request_id"] == first.json()["request_id"]
    # A read-only token cannot post at all, so its key never reaches the store.
    reader = httpx.post(
        f"{base}/v1/offboardings",
        json=body("hlambert"),
        headers={"Authorization": f"Bearer {READER}", **key},
    )
    assert reader.status_code == 403


def test_filters_and_cursor_pagination(api: httpx.Client) -> None:
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    ids = [
        api.post("/v1/offboardings", json=body("jpage", effective_at=later)).json()["request_id"]
        for _ in range(5)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"subject": "jpage", "status": "scheduled", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/requests", params=params).json()
        seen += [i["request_id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids)) and pages == 3
    assert (
        api.get("/v1/requests", params={"subject": "jpage", "status": "completed"}).json()["items"]
        == []
    )
    assert api.get("/v1/requests", params={"cursor": "garbage!"}).status_code == 400
    # Cancelling one: it leaves the scheduled list, and cannot be cancelled twice.
    cancelled = api.delete(f"/v1/requests/{ids[0]}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.delete(f"/v1/requests/{ids[0]}").status_code == 409
    still = api.get("/v1/requests", params={"subject": "jpage", "status": "scheduled"}).json()
    assert ids[0] not in [i["request_id"] for i in still["items"]]


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b'{"subject": {"user_id": "x"}, "effective_at": "tomorrow"}', "application/json", 422),
        (
            b'{"subject": {"user_id": "x"}, "effective_at": "2027-01-01T08:00:00"}',
            "application/json",
            422,
        ),
        (
            b'{"subject": {"user_id": "x"}, "effective_at": "9999-01-01T00:00:00Z"}',
            "application/json",
            422,
        ),
        (b'{"subject": {"user_id": "x"}, "effective_at": 1}', "application/json", 422),
        (b'{"subject": {"user_id": "x"}, "shoe_size": 44}', "application/json", 422),
        (b'{"subject": {"user_id": "x", "role": "admin"}}', "application/json", 422),
        (b'{"subject": {"user_id": "x"}, "actions": ["format_disk"]}', "application/json", 422),
        (b'{"subject": {"user_id": ', "application/json", 400),
        (b'{"subject": {"user_id": "x"}}', "text/plain", 415),
        (b'{"subject": {"user_id": "' + b"x" * 70_000 + b'"}}', "application/json", 413),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    api: httpx.Client, content: bytes, ctype: str, status: int
) -> None:
    before = everything(api)
    resp = api.post("/v1/offboardings", content=content, headers={"Content-Type": ctype})
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == status and resp.json()["detail"]
    assert everything(api) == before
