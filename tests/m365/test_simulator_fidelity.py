"""What the Graph simulator enforces beyond the basics: per-app throttling, user filters,
missing permissions, and Exchange's InvokeCommand (Set-CASMailbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sortie_simulators import graph
from tests.simulators.asgi import asgi_client

UPN = "carol@example.org"
APP_A = {"Authorization": "Bearer app-a"}
APP_B = {"Authorization": "Bearer app-b"}
INVOKE = "/adminapi/beta/tenant-1/InvokeCommand"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = graph.create_app()
    app.state.sim.add_user(UPN, mail="c.dupont@example.org")
    app.state.sim.add_user("guest_x#EXT#@example.org", user_type="Guest")
    async with asgi_client(app) as c:
        yield c


async def test_each_app_has_its_own_write_budget(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/config", json={"throttle_writes_per_s": 1})
    url = f"/v1.0/users/{UPN}/revokeSignInSessions"
    assert (await client.post(url, headers=APP_A)).status_code == 200
    throttled = await client.post(url, headers=APP_A)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert (await client.post(url, headers=APP_B)).status_code == 200


async def test_users_filter_by_mail_and_upn(client: httpx.AsyncClient) -> None:
    got = await client.get(
        "/v1.0/users",
        params={"$filter": "mail eq 'C.DUPONT@example.org'", "$select": "id,userPrincipalName"},
        headers=APP_A,
    )
    assert got.status_code == 200
    [user] = got.json()["value"]
    assert user["userPrincipalName"] == UPN and set(user) == {"id", "userPrincipalName"}
    none = await client.get(
        "/v1.0/users", params={"$filter": "userPrincipalName eq 'o''neil@x'"}, headers=APP_A
    )
    assert none.json()["value"] == []
    bad = await client.get("/v1.0/users", params={"$filter": "startswith(mail,'c')"}, headers=APP_A)
    assert bad.status_code == 400
    top = await client.get("/v1.0/users", params={"$top": "0"}, headers=APP_A)
    assert top.status_code == 400


async def test_missing_permission_answers_403_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    set_ = await client.post(
        "/_sim/permissions", json={"missing": ["User.EnableDisableAccount.All"]}
    )
    assert set_.json() == {"missing": ["User.EnableDisableAccount.All"]}
    denied = await client.patch(f"/v1.0/users/{UPN}", json={"accountEnabled": False}, headers=APP_A)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert (await client.get(f"/_sim/users/{UPN}")).json()["accountEnabled"] is True
    ok = await client.post(f"/v1.0/users/{UPN}/revokeSignInSessions", headers=APP_A)
    assert ok.status_code == 200
    refused = await client.post("/_sim/permissions", json={"missing": ["bad perm!"]})
    assert refused.status_code == 422


def _cas(identity: str, **params: object) -> dict[str, object]:
    return {
        "CmdletInput": {
            "CmdletName": "Set-CASMailbox",
            "Parameters": {"Identity": identity, **params},
        }
    }


async def test_set_cas_mailbox(client: httpx.AsyncClient) -> None:
    before = (await client.get(f"/_sim/users/{UPN}")).json()["cas_mailbox"]
    assert set(before.values()) == {True} and "OutlookMobileEnabled" in before
    done = await client.post(
        INVOKE, json=_cas(UPN, OWAEnabled=False, ImapEnabled=False), headers=APP_A
    )
    assert done.status_code == 200
    after = (await client.get(f"/_sim/users/{UPN}")).json()["cas_mailbox"]
    assert (after["OWAEnabled"], after["ImapEnabled"], after["PopEnabled"]) == (False, False, True)


@pytest.mark.parametrize(
    ("payload", "headers", "status"),
    [
        (_cas(UPN, OWAEnabled=False), {}, 401),
        (_cas(UPN, Nonsense=False), APP_A, 400),
        (_cas(UPN, OWAEnabled="no"), APP_A, 400),
        ({"CmdletInput": {"CmdletName": "Remove-Mailbox", "Parameters": {}}}, APP_A, 400),
        (_cas("", OWAEnabled=False), APP_A, 400),
        (_cas("nobody@example.org", OWAEnabled=False), APP_A, 404),
    ],
)
async def test_invoke_command_refusals_change_nothing(
    client: httpx.AsyncClient, payload: dict[str, object], headers: dict[str, str], status: int
) -> None:
    answer = await client.post(INVOKE, json=payload, headers=headers)
    assert answer.status_code == status
    state = (await client.get(f"/_sim/users/{UPN}")).json()["cas_mailbox"]
    assert set(state.values()) == {True}


async def test_filters_follow_graphs_advanced_query_rules(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/_sim/users",
        json={
            "userPrincipalName": "erin@example.org",
            "employeeId": "E7",
            "onPremisesSamAccountName": "erin",
        },
    )
    assert made.status_code == 201
    by_employee = await client.get(
        "/v1.0/users", params={"$filter": "employeeId eq 'e7'"}, headers=APP_A
    )
    assert [u["userPrincipalName"] for u in by_employee.json()["value"]] == ["erin@example.org"]
    sam = {"$filter": "onPremisesSamAccountName eq 'erin'"}
    # Not a default query: both the header and $count=true are needed.
    for params, headers in (
        (sam, APP_A),
        ({**sam, "$count": "true"}, APP_A),
        (sam, {**APP_A, "ConsistencyLevel": "eventual"}),
    ):
        refused = await client.get("/v1.0/users", params=params, headers=headers)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    advanced = await client.get(
        "/v1.0/users",
        params={**sam, "$count": "true"},
        headers={**APP_A, "ConsistencyLevel": "eventual"},
    )
    assert advanced.status_code == 200
    assert advanced.json()["@odata.count"] == 1
    # A mail address is no key of /users/{id}: Graph answers 404 unless it is the UPN.
    assert (await client.get("/v1.0/users/c.dupont@example.org", headers=APP_A)).status_code == 404


async def test_dropped_writes_are_answered_and_not_applied(client: httpx.AsyncClient) -> None:
    refused = await client.post("/_sim/drop-writes", json={"drop": ["displayName"]})
    assert refused.status_code == 422
    set_ = await client.post(
        "/_sim/drop-writes", json={"drop": ["accountEnabled", "revokeSignInSessions"]}
    )
    assert set_.json() == {"drop": ["accountEnabled", "revokeSignInSessions"]}
    before = (await client.get(f"/_sim/users/{UPN}")).json()
    patched = await client.patch(
        f"/v1.0/users/{UPN}", json={"accountEnabled": False}, headers=APP_A
    )
    revoked = await client.post(f"/v1.0/users/{UPN}/revokeSignInSessions", headers=APP_A)
    assert (patched.status_code, revoked.status_code) == (204, 200)
    after = (await client.get(f"/_sim/users/{UPN}")).json()
    assert after["accountEnabled"] is True
    assert after["signInSessionsValidFromDateTime"] == before["signInSessionsValidFromDateTime"]
    assert (await client.get("/_sim/stats")).json()["dropped"] == 2
    await client.post("/_sim/drop-writes", json={"drop": []})
    await client.patch(f"/v1.0/users/{UPN}", json={"accountEnabled": False}, headers=APP_A)
    assert (await client.get(f"/_sim/users/{UPN}")).json()["accountEnabled"] is False


async def test_get_cas_mailbox_reads_the_switches(client: httpx.AsyncClient) -> None:
    await client.post(INVOKE, json=_cas(UPN, PopEnabled=False), headers=APP_A)
    read = {"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"Identity": UPN}}}
    answer = await client.post(INVOKE, json=read, headers=APP_A)
    [mailbox] = answer.json()["value"]
    assert mailbox["Identity"] == UPN
    assert (mailbox["PopEnabled"], mailbox["OWAEnabled"]) == (False, True)
    bad = {"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"Identity": UPN, "X": 1}}}
    assert (await client.post(INVOKE, json=bad, headers=APP_A)).status_code == 400
