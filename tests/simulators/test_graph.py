from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from sortie_simulators import graph
from sortie_simulators.demo import ALICE, BOB, DEMO_USERS
from tests.simulators.asgi import asgi_client

AUTH = {"Authorization": "Bearer test-token"}
REVOKED = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
    "value": True,
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(graph.create_app(seed_demo=True)) as c:
        yield c


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert error["innerError"]["date"].endswith("Z")
    return error


# -- auth --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwdw=="}]
)
async def test_v1_calls_need_a_bearer_token(client: httpx.AsyncClient, headers: dict) -> None:
    for method, url in [
        ("GET", f"/v1.0/users/{ALICE.upn}"),
        ("PATCH", f"/v1.0/users/{ALICE.upn}"),
        ("POST", f"/v1.0/users/{ALICE.upn}/revokeSignInSessions"),
        ("POST", "/v1.0/$batch"),
    ]:
        response = await client.request(method, url, headers=headers, json={})
        assert_graph_error(response, 401, "InvalidAuthenticationToken")
    state = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
    assert state["revocation_count"] == 0


# -- GET /users/{id} ---------------------------------------------------------------------
@pytest.mark.parametrize("key", [ALICE.graph_id, ALICE.upn, "ALICE@Example.ORG", ALICE.mail])
async def test_get_user_by_id_upn_or_mail(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get(f"/v1.0/users/{key}", headers=AUTH)
    assert response.status_code == 200
    user = response.json()
    assert user["id"] == ALICE.graph_id
    assert user["userPrincipalName"] == ALICE.upn
    assert user["mail"] == ALICE.mail
    assert user["displayName"] == ALICE.display_name
    assert user["accountEnabled"] is True
    assert user["userType"] == "Member"
    assert user["signInSessionsValidFromDateTime"].endswith("Z")


async def test_get_user_select_keeps_the_named_properties(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"/v1.0/users/{BOB.upn}", params={"$select": "id,accountEnabled"}, headers=AUTH
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == BOB.graph_id
    assert body["accountEnabled"] is True
    assert "mail" not in body


async def test_get_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1.0/users/nobody@example.org", headers=AUTH)
    error = assert_graph_error(response, 404, "Request_ResourceNotFound")
    assert "nobody@example.org" in error["message"]


async def test_unknown_segment_is_a_graph_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1.0/groups/x", headers=AUTH)
    assert_graph_error(response, 400, "BadRequest")


# -- PATCH /users/{id} -------------------------------------------------------------------
async def test_patch_blocks_sign_in(client: httpx.AsyncClient) -> None:
    # msgraph-sdk always sends @odata.type: it must be accepted.
    body = {"@odata.type": "#microsoft.graph.user", "accountEnabled": False}
    response = await client.patch(f"/v1.0/users/{ALICE.upn}", json=body, headers=AUTH)
    assert response.status_code == 204
    assert response.content == b""
    user = (await client.get(f"/v1.0/users/{ALICE.graph_id}", headers=AUTH)).json()
    assert user["accountEnabled"] is False
    assert (await client.get(f"/_sim/users/{ALICE.upn}")).json()["accountEnabled"] is False


async def test_patch_password_is_stored_as_a_hash_only(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Correct-Horse-Battery-9"
    caplog.set_level(logging.DEBUG)
    body = {
        "passwordProfile": {
            "password": secret,
            "forceChangePasswordNextSignIn": True,
            "forceChangePasswordNextSignInWithMfa": False,
        }
    }
    response = await client.patch(f"/v1.0/users/{ALICE.upn}", json=body, headers=AUTH)
    assert response.status_code == 204
    state = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
    assert state["password_changed_at"] is not None
    assert state["force_change"] is True
    assert state["force_change_mfa"] is False
    everything = str(state) + str((await client.get("/_sim/users")).json())
    everything += (await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)).text
    assert secret not in everything
    assert "password_hash" not in everything
    assert secret not in caplog.text
    check = await client.post(f"/_sim/users/{ALICE.upn}/verify-password", json={"password": secret})
    assert check.json() == {"matches": True}
    wrong = await client.post(f"/_sim/users/{ALICE.upn}/verify-password", json={"password": "x"})
    assert wrong.json() == {"matches": False}


async def test_patch_unknown_property_is_400_naming_it(client: httpx.AsyncClient) -> None:
    body = {"accountEnabled": False, "jobTitle": "leaver"}
    response = await client.patch(f"/v1.0/users/{ALICE.upn}", json=body, headers=AUTH)
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert "jobTitle" in error["message"]
    # Nothing was applied: the valid property next to the bad one did not change.
    assert (await client.get(f"/_sim/users/{ALICE.upn}")).json()["accountEnabled"] is True


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"passwordProfile": {"password": "short7!"}}, "complexity"),
        ({"passwordProfile": {"password": "long-enough-1", "colour": "red"}}, "colour"),
        ({"passwordProfile": "x"}, "passwordProfile"),
        ({"accountEnabled": "no"}, "accountEnabled"),
        ({"passwordProfile": {"forceChangePasswordNextSignIn": "yes"}}, "passwordProfile"),
        ([], "JSON object"),
    ],
)
async def test_patch_invalid_bodies_are_400(
    client: httpx.AsyncClient, body: object, named: str
) -> None:
    response = await client.patch(f"/v1.0/users/{ALICE.upn}", json=body, headers=AUTH)
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert named in error["message"]
    state = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
    assert state["password_changed_at"] is None
    assert state["accountEnabled"] is True


async def test_patch_with_unreadable_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"/v1.0/users/{ALICE.upn}", content=b"{not json", headers=AUTH)
    assert_graph_error(response, 400, "BadRequest")


async def test_patch_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/v1.0/users/ghost@example.org", json={"accountEnabled": False}, headers=AUTH
    )
    assert_graph_error(response, 404, "Request_ResourceNotFound")


# -- revokeSignInSessions ----------------------------------------------------------------
async def test_revoke_sign_in_sessions(client: httpx.AsyncClient) -> None:
    before = (await client.get(f"/_sim/users/{BOB.upn}")).json()
    response = await client.post(f"/v1.0/users/{BOB.upn}/revokeSignInSessions", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == REVOKED
    await client.post(f"/v1.0/users/{BOB.graph_id}/revokeSignInSessions", headers=AUTH)
    after = (await client.get(f"/_sim/users/{BOB.upn}")).json()
    assert after["revocation_count"] == 2
    assert after["signInSessionsValidFromDateTime"] > before["signInSessionsValidFromDateTime"]
    stats = (await client.get("/_sim/stats")).json()
    assert stats["writes"] == 2


async def test_revoke_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1.0/users/ghost/revokeSignInSessions", headers=AUTH)
    assert_graph_error(response, 404, "Request_ResourceNotFound")


async def test_revoke_with_get_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1.0/users/{BOB.upn}/revokeSignInSessions", headers=AUTH)
    assert response.status_code == 405


# -- $batch --------------------------------------------------------------------------------
async def test_batch_runs_each_item_through_the_same_logic(client: httpx.AsyncClient) -> None:
    encoded = base64.b64encode(b'{"accountEnabled": false}').decode()
    requests = [
        {"id": "1", "method": "POST", "url": f"/users/{ALICE.upn}/revokeSignInSessions"},
        {
            "id": "2",
            "method": "PATCH",
            "url": f"/users/{BOB.graph_id}",
            "headers": {"Content-Type": "application/json"},
            "body": {"accountEnabled": False},
        },
        {"id": "3", "method": "GET", "url": "/users/ghost@example.org"},
        {"id": "4", "method": "PATCH", "url": f"/users/{ALICE.upn}", "body": {"foo": 1}},
        {"id": "5", "method": "PATCH", "url": f"users/{ALICE.upn}", "body": encoded},
        {"id": "6", "method": "GET", "url": f"/users/{BOB.upn}?$select=accountEnabled"},
    ]
    response = await client.post("/v1.0/$batch", json={"requests": requests}, headers=AUTH)
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert [by_id[i]["status"] for i in "123456"] == [200, 204, 404, 400, 204, 200]
    assert by_id["1"]["body"] == REVOKED
    assert by_id["3"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert "foo" in by_id["4"]["body"]["error"]["message"]
    assert by_id["6"]["body"]["accountEnabled"] is False
    assert all(set(item) == {"id", "status", "headers", "body"} for item in by_id.values())
    alice = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
    assert alice["revocation_count"] == 1
    assert alice["accountEnabled"] is False


async def test_a_batch_item_runs_after_what_it_depends_on_or_is_424(
    client: httpx.AsyncClient,
) -> None:
    select = "?$select=signInSessionsValidFromDateTime"
    requests = [
        {"id": "w", "method": "POST", "url": f"/users/{ALICE.upn}/revokeSignInSessions"},
        {"id": "r", "method": "GET", "url": f"/users/{ALICE.upn}{select}", "dependsOn": ["w"]},
        {"id": "x", "method": "POST", "url": "/users/ghost@example.org/revokeSignInSessions"},
        {"id": "y", "method": "GET", "url": f"/users/{BOB.upn}", "dependsOn": ["x"]},
        {"id": "z", "method": "GET", "url": f"/users/{BOB.upn}", "dependsOn": ["later"]},
        {"id": "later", "method": "GET", "url": f"/users/{BOB.upn}"},
    ]
    response = await client.post("/v1.0/$batch", json={"requests": requests}, headers=AUTH)
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert [by_id[i]["status"] for i in ("w", "r", "x", "y", "z", "later")] == [
        200, 200, 404, 424, 424, 200,
    ]  # fmt: skip
    alice = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
    # The read ran after the revocation: it sees the timestamp the revocation set (to
    # the second, as Graph writes it).
    seen = by_id["r"]["body"]["signInSessionsValidFromDateTime"]
    assert alice["revocation_count"] == 1 and seen
    assert alice["signInSessionsValidFromDateTime"].startswith(seen.removesuffix("Z"))
    assert by_id["y"]["body"]["error"]["code"] == "FailedDependency"


async def test_batch_of_more_than_20_is_refused(client: httpx.AsyncClient) -> None:
    requests = [
        {"id": str(i), "method": "POST", "url": f"/users/{ALICE.upn}/revokeSignInSessions"}
        for i in range(21)
    ]
    response = await client.post("/v1.0/$batch", json={"requests": requests}, headers=AUTH)
    error = assert_graph_error(response, 400, "BadRequest")
    assert "20" in error["message"]
    assert (await client.get(f"/_sim/users/{ALICE.upn}")).json()["revocation_count"] == 0
    ok = await client.post("/v1.0/$batch", json={"requests": requests[:20]}, headers=AUTH)
    assert [r["status"] for r in ok.json()["responses"]] == [200] * 20


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"requests": []},
        {"requests": [{"id": "1", "method": "GET"}]},
        {"requests": [{"id": "1", "method": "GET", "url": "/users/a"}] * 2},
        "not an object",
    ],
)
async def test_malformed_batches_are_400(client: httpx.AsyncClient, payload: object) -> None:
    response = await client.post("/v1.0/$batch", json=payload, headers=AUTH)
    assert_graph_error(response, 400, "BadRequest")


# -- faults ----------------------------------------------------------------------------------
async def test_throttled_writes_get_429_with_retry_after() -> None:
    clock = FakeClock()
    async with asgi_client(
        graph.create_app(seed_demo=True, throttle_writes_per_s=1, clock=clock)
    ) as client:
        url = f"/v1.0/users/{ALICE.upn}/revokeSignInSessions"
        assert (await client.post(url, headers=AUTH)).status_code == 200
        throttled = await client.post(url, headers=AUTH)
        assert_graph_error(throttled, 429, "TooManyRequests")
        assert int(throttled.headers["Retry-After"]) >= 1
        # Reads are never throttled.
        assert (await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)).status_code == 200
        clock.now += 1.0
        assert (await client.post(url, headers=AUTH)).status_code == 200
        stats = (await client.get("/_sim/stats")).json()
        assert stats == {"requests": 4, "writes": 2, "throttled": 1, "errors": 0, "dropped": 0}
        state = (await client.get(f"/_sim/users/{ALICE.upn}")).json()
        assert state["revocation_count"] == 2


async def test_throttle_counts_each_batch_item() -> None:
    clock = FakeClock()
    async with asgi_client(
        graph.create_app(seed_demo=True, throttle_writes_per_s=2, clock=clock)
    ) as client:
        requests = [
            {"id": str(i), "method": "POST", "url": f"/users/{BOB.upn}/revokeSignInSessions"}
            for i in range(4)
        ]
        requests.append({"id": "read", "method": "GET", "url": f"/users/{BOB.upn}"})
        response = await client.post("/v1.0/$batch", json={"requests": requests}, headers=AUTH)
        items = response.json()["responses"]
        assert [item["status"] for item in items] == [200, 200, 429, 429, 200]
        assert items[2]["headers"]["Retry-After"] == "1"
        assert items[2]["body"]["error"]["code"] == "TooManyRequests"
        assert (await client.get("/_sim/stats")).json()["throttled"] == 2


def _token(appid: str, tid: str) -> dict[str, str]:
    """An access token shaped like Entra's (claims only: the simulator does not verify)."""

    def part(data: dict[str, str]) -> str:
        raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        return raw.rstrip("=")

    jwt = f"{part({'alg': 'RS256'})}.{part({'appid': appid, 'tid': tid})}.sig"
    return {"Authorization": f"Bearer {jwt}"}


async def test_throttles_per_application_and_per_tenant() -> None:
    """Two apps of one tenant each have their own budget, and the tenant's caps both."""
    clock = FakeClock()
    app = graph.create_app(
        seed_demo=True, throttle_writes_per_s=2, throttle_tenant_writes_per_s=3, clock=clock
    )
    async with asgi_client(app) as client:
        url = f"/v1.0/users/{ALICE.upn}/revokeSignInSessions"
        a, b, other = _token("app-a", "t1"), _token("app-b", "t1"), _token("app-a", "t2")
        codes = [(await client.post(url, headers=h)).status_code for h in (a, a, a, b, b)]
        # a: 2 then throttled per app; b: the tenant's third, then the tenant's cap.
        assert codes == [200, 200, 429, 200, 429]
        # The same app in another tenant is another budget.
        assert (await client.post(url, headers=other)).status_code == 200
        clock.now += 1.0
        assert (await client.post(url, headers=b)).status_code == 200
        assert (await client.get("/_sim/stats")).json()["throttled"] == 2


async def test_error_rate_answers_503_service_unavailable() -> None:
    async with asgi_client(graph.create_app(seed_demo=True, error_rate=1.0)) as client:
        response = await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)
        assert_graph_error(response, 503, "ServiceUnavailable")
        assert response.headers["Retry-After"] == "1"
        revoke = await client.post(f"/v1.0/users/{ALICE.upn}/revokeSignInSessions", headers=AUTH)
        assert revoke.status_code == 503
        assert (await client.get(f"/_sim/users/{ALICE.upn}")).json()["revocation_count"] == 0
        assert (await client.get("/_sim/stats")).json()["errors"] == 2


async def test_partial_error_rate_is_reproducible_with_a_seed() -> None:
    async def statuses() -> list[int]:
        app = graph.create_app(seed_demo=True, error_rate=0.5, random_seed=7)
        async with asgi_client(app) as client:
            return [
                (await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)).status_code
                for _ in range(40)
            ]

    first = await statuses()
    assert set(first) == {200, 503}
    assert first == await statuses()


async def test_latency_is_added_to_v1_calls_only() -> None:
    async with asgi_client(graph.create_app(seed_demo=True, latency_ms=150)) as client:
        started = time.monotonic()
        assert (await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)).status_code == 200
        assert time.monotonic() - started >= 0.15
        started = time.monotonic()
        await client.get("/_sim/stats")
        assert time.monotonic() - started < 0.15


async def test_config_changes_faults_at_run_time(client: httpx.AsyncClient) -> None:
    url = f"/v1.0/users/{ALICE.upn}/revokeSignInSessions"
    config = await client.post("/_sim/config", json={"throttle_writes_per_s": 1})
    assert config.json()["throttle_writes_per_s"] == 1
    assert (await client.post(url, headers=AUTH)).status_code == 200
    assert (await client.post(url, headers=AUTH)).status_code == 429
    config = await client.post("/_sim/config", json={"throttle_writes_per_s": None})
    assert config.json() == {
        "latency_ms": 0.0,
        "error_rate": 0.0,
        "throttle_writes_per_s": None,
        "throttle_tenant_writes_per_s": None,
    }
    assert (await client.post(url, headers=AUTH)).status_code == 200
    await client.post("/_sim/config", json={"error_rate": 1})
    assert (await client.post(url, headers=AUTH)).status_code == 503
    assert (await client.get("/_sim/config")).json()["error_rate"] == 1
    bad = await client.post("/_sim/config", json={"error_rate": 2})
    assert bad.status_code == 422


# -- simulator admin -------------------------------------------------------------------------
async def test_admin_creates_users_and_refuses_duplicates(client: httpx.AsyncClient) -> None:
    new = {"userPrincipalName": "guest@partner.example", "userType": "Guest", "id": "g-1"}
    created = await client.post("/_sim/users", json=new)
    assert created.status_code == 201
    assert created.json()["id"] == "g-1"
    user = (await client.get("/v1.0/users/GUEST@partner.example", headers=AUTH)).json()
    assert user["userType"] == "Guest"
    assert user["mail"] is None
    again = await client.post("/_sim/users", json={"userPrincipalName": ALICE.upn})
    assert again.status_code == 409
    stray = await client.post("/_sim/users", json={"userPrincipalName": "a@b", "x": 1})
    assert stray.status_code == 422


async def test_admin_bulk_creates_numbered_users(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sim/users:bulk", json={"count": 250, "prefix": "user"})
    assert response.status_code == 201
    assert response.json() == {
        "created": 250,
        "existing": 0,
        "first": "user00001@example.org",
        "last": "user00250@example.org",
    }
    user = await client.get("/v1.0/users/user00137@example.org", headers=AUTH)
    assert user.status_code == 200
    assert user.json()["mail"] == "user00137@example.org"
    again = await client.post("/_sim/users:bulk", json={"count": 251})
    assert again.json()["created"] == 1
    demo = len(DEMO_USERS)
    assert len((await client.get("/_sim/users", params={"limit": 10_000})).json()) == 251 + demo


async def test_admin_user_state_and_stats(client: httpx.AsyncClient) -> None:
    assert (await client.get("/_sim/users/ghost")).status_code == 404
    state = (await client.get(f"/_sim/users/{ALICE.graph_id}")).json()
    assert state["revocation_count"] == 0
    assert state["password_changed_at"] is None
    assert state["force_change"] is False
    await client.get(f"/v1.0/users/{ALICE.upn}", headers=AUTH)
    await client.post(f"/v1.0/users/{ALICE.upn}/revokeSignInSessions", headers=AUTH)
    stats = (await client.get("/_sim/stats")).json()
    assert stats == {"requests": 2, "writes": 1, "throttled": 0, "errors": 0, "dropped": 0}
    reset = await client.post("/_sim/reset-stats")
    assert reset.json() == {"requests": 0, "writes": 0, "throttled": 0, "errors": 0, "dropped": 0}
    assert (await client.get("/_sim/stats")).json()["requests"] == 0
