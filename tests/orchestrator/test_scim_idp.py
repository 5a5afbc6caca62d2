"""Replays of what Microsoft Entra ID provisioning and Okta's SCIM 2.0 client send, against
a live orchestrator configured with a light offboarding profile and a site template.
Each request is built from the vendor's public documentation (cited per test); what
deactivation starts is read back from the `offboard.requested` stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis as redis_sync

from sortie_core import streams
from sortie_orchestrator.http.scim.policy import ScimConfig
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.workers import answer_offboarding, commands, step, until
from tests.support.live import live_orchestrator

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SORTIE = "urn:sortie:params:scim:schemas:extension:sortie:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

CONFIG = ScimConfig.model_validate(
    {
        "profiles": {"full": [], "light": ["block_sign_in", "revoke_sessions"]},
        "deactivate_rules": [{"group": "Sortie Light", "profile": "light"}],
        "sites": {"lycee-a": {"windows_account": ["LYCEEA\\${userName}"]}},
    }
)


@pytest.fixture(scope="module")
def base(server: RedisServer) -> Iterator[str]:
    with live_orchestrator(server, scim=CONFIG) as url:
        yield url


def offboard_event(server: RedisServer, link: str) -> dict[str, Any]:
    rid = link.rsplit("/", 1)[1]
    client = redis_sync.Redis.from_url(server.url)
    try:
        for _, fields in client.xrange(streams.OFFBOARD_REQUESTED):
            if fields[b"request_id"].decode() == rid:
                event: dict[str, Any] = json.loads(fields[b"data"])
                return event
    finally:
        client.close()
    raise AssertionError(f"no offboard.requested for {rid}")


def ok(resp: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/scim+json")
    body: dict[str, Any] = resp.json() if resp.content else {}
    return body


def patch(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(ops)}


# https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
# ("User operations", "Group operations": the request samples) and
# https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility
# (capitalised ops, "False" as a string, manager as a bare id, remove members by value).


def test_entra_user_lifecycle(scim: httpx.Client, api: httpx.Client, server: RedisServer) -> None:
    create = {
        "schemas": [CORE, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@testuser.com",
        "active": True,
        "emails": [
            {
                "primary": True,
                "type": "work",
                "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com",
            }
        ],
        "meta": {"resourceType": "User"},
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
        "roles": [],
        "title": "Teacher",
        ENTERPRISE: {"employeeNumber": "701984", "department": "Mathematics"},
    }
    user = ok(scim.post("/Users", json=create), 201)
    uid = user["id"]
    assert user["title"] == "Teacher" and user[ENTERPRISE]["department"] == "Mathematics"
    assert (
        user["meta"]["version"]
        and scim.get(f"/Users/{uid}").headers["etag"] == user["meta"]["version"]
    )
    # Before creating, Entra looks the user up by userName; afterwards by id.
    found = ok(scim.get("/Users", params={"filter": f'userName eq "{create["userName"].upper()}"'}))
    assert [r["id"] for r in found["Resources"]] == [uid]
    none = ok(scim.get("/Users", params={"filter": 'userName eq "non-existent user"'}))
    assert none["totalResults"] == 0 and none["Resources"] == []
    by_mail = ok(
        scim.get(
            "/Users",
            params={
                "filter": 'emails[type eq "work"].value eq "' + create["emails"][0]["value"] + '"'
            },
        )
    )
    assert by_mail["totalResults"] == 1

    # Update [multi-valued properties], [single-valued properties], the manager.
    manager = ok(
        scim.post("/Users", json={"schemas": [CORE], "userName": "manager.entra@testuser.com"}), 201
    )
    changed = ok(
        scim.patch(
            f"/Users/{uid}",
            json=patch(
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "updatedEmail@microsoft.com",
                },
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager["id"]},
                {
                    "op": "Add",
                    "path": 'phoneNumbers[type eq "mobile"].value',
                    "value": "+33 6 12 34 56 78",
                },
                {
                    "op": "Replace",
                    "value": {"displayName": "Updated Name", f"{ENTERPRISE}:department": "Physics"},
                },
            ),
        )
    )
    assert changed["emails"] == [
        {"value": "updatedEmail@microsoft.com", "type": "work", "primary": True}
    ]
    assert (
        changed["name"]["familyName"] == "updatedFamilyName"
        and changed["displayName"] == "Updated Name"
    )
    assert changed[ENTERPRISE]["manager"]["value"] == manager["id"]
    assert changed[ENTERPRISE]["department"] == "Physics"
    assert changed["phoneNumbers"] == [{"value": "+33 6 12 34 56 78", "type": "mobile"}]
    renamed = ok(
        scim.patch(
            f"/Users/{uid}",
            json=patch({"op": "Replace", "path": "userName", "value": "5b50642d@testuser.com"}),
        )
    )
    assert renamed["userName"] == "5b50642d@testuser.com"

    # Disable: the full offboarding, by default.
    off = scim.patch(
        f"/Users/{uid}", json=patch({"op": "Replace", "path": "active", "value": "False"})
    )
    assert ok(off)["active"] is False
    link = off.headers["Sortie-Offboarding"]
    assert "offboarding" not in ok(off).get(SORTIE, {})  # returned only when asked for
    asked = ok(scim.get(f"/Users/{uid}", params={"attributes": f"{SORTIE}:offboarding"}))
    assert asked[SORTIE] == {"offboarding": link}
    view = api.get(link).json()
    assert view["kind"] == "offboard" and view["reason"] == "scim_deactivated"
    assert view["subject"] == {
        "user_id": "5b50642d@testuser.com",
        "upn": "5b50642d@testuser.com",
        "cas_username": "5b50642d@testuser.com",
        "windows_account": None,
        "site": None,
    }
    assert offboard_event(server, link)["actions"] == []
    # Re-enable: recorded on the user.
    on = patch({"op": "Replace", "path": "active", "value": "True"})
    back = ok(scim.patch(f"/Users/{uid}", json=on, params={"excludedAttributes": "emails"}))
    assert back["active"] is True and "emails" not in back
    asked = ok(
        scim.get(f"/Users/{uid}", params={"attributes": f"{SORTIE}:reactivationRequestedAt"})
    )
    assert datetime.fromisoformat(asked[SORTIE]["reactivationRequestedAt"]) <= datetime.now(UTC)

    # Hard delete, 30 days after the soft delete: already active again, so an offboarding.
    gone = scim.delete(f"/Users/{uid}")
    assert gone.status_code == 204
    assert api.get(gone.headers["Sortie-Offboarding"]).json()["reason"] == "scim_deleted"
    assert scim.get(f"/Users/{uid}").status_code == 404


def test_entra_groups_pick_the_light_profile(
    scim: httpx.Client, api: httpx.Client, server: RedisServer
) -> None:
    member = ok(
        scim.post(
            "/Users",
            json={
                "schemas": [CORE, SORTIE],
                "userName": "pupil.light",
                "emails": [{"value": "pupil.light@lycee.example", "type": "work", "primary": True}],
                SORTIE: {"site": "lycee-a", "casUsername": "plight"},
            },
        ),
        201,
    )
    group = ok(
        scim.post(
            "/Groups",
            json={
                "schemas": [
                    GROUP,
                    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
                ],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
                "meta": {"resourceType": "Group"},
            },
        ),
        201,
    )
    gid = group["id"]
    listed = ok(
        scim.get(
            "/Groups",
            params={"excludedAttributes": "members", "filter": 'displayName eq "displayName"'},
        )
    )
    assert [g["id"] for g in listed["Resources"]] == [gid]
    ok(
        scim.patch(
            f"/Groups/{gid}",
            json=patch({"op": "Replace", "path": "displayName", "value": "Sortie Light"}),
        )
    )
    ok(
        scim.patch(
            f"/Groups/{gid}",
            json=patch(
                {"op": "Add", "path": "members", "value": [{"$ref": None, "value": member["id"]}]}
            ),
        )
    )
    fetched = ok(scim.get(f"/Groups/{gid}"))
    assert [m["value"] for m in fetched["members"]] == [member["id"]]
    assert "members" not in ok(scim.get(f"/Groups/{gid}", params={"excludedAttributes": "members"}))
    assert [g["display"] for g in ok(scim.get(f"/Users/{member['id']}"))["groups"]] == [
        "Sortie Light"
    ]

    off = scim.patch(
        f"/Users/{member['id']}", json=patch({"op": "Replace", "path": "active", "value": False})
    )
    link = off.headers["Sortie-Offboarding"]
    view = api.get(link).json()
    assert view["reason"] == "scim_deactivated:light"
    assert view["subject"]["windows_account"] == "LYCEEA\\pupil.light"
    assert view["subject"]["cas_username"] == "plight"
    assert offboard_event(server, link)["actions"] == ["block_sign_in", "revoke_sessions"]

    ok(
        scim.patch(
            f"/Groups/{gid}",
            json=patch({"op": "Remove", "path": "members", "value": [{"value": member["id"]}]}),
        )
    )
    assert "members" not in ok(scim.get(f"/Groups/{gid}"))
    assert "groups" not in ok(scim.get(f"/Users/{member['id']}"))
    assert scim.delete(f"/Groups/{gid}").status_code == 204


# https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20
# ("SCIM User operations" and "SCIM Group operations": the request samples).


def test_okta_user_and_group_lifecycle(
    scim: httpx.Client, api: httpx.Client, server: RedisServer
) -> None:
    # Okta first reads one page of users, then looks the user up by userName.
    assert ok(scim.get("/Users", params={"startIndex": 1, "count": 2}))["startIndex"] == 1
    lookup = ok(
        scim.get(
            "/Users",
            params={"filter": 'userName eq "test.user@okta.local"', "startIndex": 1, "count": 100},
        )
    )
    assert lookup["totalResults"] == 0
    create = {
        "schemas": [CORE],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    user = ok(scim.post("/Users", json=create), 201)
    uid = user["id"]
    assert user["locale"] == "en-US" and "password" not in user and "groups" not in user
    assert "1mz050nq" not in json.dumps(ok(scim.get(f"/Users/{uid}")))
    stored = redis_sync.Redis.from_url(server.url)
    assert b"1mz050nq" not in stored.hget(f"sortie:scim:user:{uid}", "doc")  # never stored
    stored.close()
    put = {
        **create,
        "id": uid,
        "name": {"givenName": "Another", "middleName": "", "familyName": "User"},
        "meta": {"resourceType": "User"},
    }
    replaced = ok(scim.put(f"/Users/{uid}", json=put))
    assert (
        replaced["name"]["givenName"] == "Another"
        and replaced["externalId"] == create["externalId"]
    )

    group = ok(
        scim.post(
            "/Groups", json={"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []}
        ),
        201,
    )
    gid = group["id"]
    ok(
        scim.patch(
            f"/Groups/{gid}",
            json=patch({"op": "replace", "value": {"id": gid, "displayName": "Sortie Light"}}),
        )
    )
    ok(
        scim.patch(
            f"/Groups/{gid}",
            json=patch(
                {
                    "op": "add",
                    "path": "members",
                    "value": [{"value": uid, "display": "test.user@okta.local"}],
                }
            ),
        )
    )
    assert (
        ok(scim.get("/Groups", params={"filter": 'displayName eq "Sortie Light"'}))["totalResults"]
        == 1
    )

    # Deactivation: the no-path replace; a member of "Sortie Light" gets the light profile.
    off = scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "value": {"active": False}}))
    assert ok(off)["active"] is False
    link = off.headers["Sortie-Offboarding"]
    assert offboard_event(server, link)["actions"] == ["block_sign_in", "revoke_sessions"]
    assert api.get(link).json()["subject"]["upn"] == "test.user@okta.local"
    # Okta's PUT with groups: [] (read-only, ignored) and active back to true.
    again = ok(scim.put(f"/Users/{uid}", json={**put, "active": True, "groups": []}))
    assert again["active"] is True
    asked = ok(
        scim.get(f"/Users/{uid}", params={"attributes": f"{SORTIE}:reactivationRequestedAt,groups"})
    )
    assert asked[SORTIE]["reactivationRequestedAt"] and asked["groups"]
    assert [g["value"] for g in again["groups"]] == [gid]

    ok(
        scim.patch(
            f"/Groups/{gid}", json=patch({"op": "remove", "path": f'members[value eq "{uid}"]'})
        )
    )
    assert "members" not in ok(scim.get(f"/Groups/{gid}"))
    assert scim.delete(f"/Groups/{gid}").status_code == 204
    assert scim.get(f"/Groups/{gid}").status_code == 404


def test_scheduled_offboarding_from_offboard_at_is_cancelled_by_reactivation(
    scim: httpx.Client, api: httpx.Client
) -> None:
    when = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    body = {
        "schemas": [CORE, SORTIE],
        "userName": "leaver.later",
        SORTIE: {"offboardAt": when.isoformat()},
    }
    user = ok(scim.post("/Users", json=body), 201)
    off = scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "replace", "path": "active", "value": False})
    )
    view = api.get(off.headers["Sortie-Offboarding"]).json()
    assert view["status"] == "scheduled"
    assert datetime.fromisoformat(view["effective_at"]) == when
    back = scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "replace", "path": "active", "value": True})
    )
    assert back.headers["Sortie-Cancelled"] == off.headers["Sortie-Offboarding"]
    assert api.get(off.headers["Sortie-Offboarding"]).json()["status"] == "cancelled"


# Re-enabling a user whose offboarding ran: Entra sends `Replace active "True"` (the
# compatibility page above), Okta a PUT of the whole user with `active: true` (the Okta
# guide, "Update a specific User (PUT)").


def test_entra_reactivation_reverses_what_the_offboarding_recorded(
    scim: httpx.Client, api: httpx.Client, server: RedisServer
) -> None:
    user = ok(
        scim.post(
            "/Users",
            json={"schemas": [CORE], "userName": "returning.teacher@testuser.com", "active": True},
        ),
        201,
    )
    off = scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "Replace", "path": "active", "value": "False"})
    )
    original = off.headers["Sortie-Offboarding"].rsplit("/", 1)[1]
    recorded = {
        "block_sign_in": {"account_enabled": True},
        "disable_mail_protocols": {"protocols": {"OWAEnabled": True, "ImapEnabled": False}},
    }
    answer_offboarding(
        server.url,
        original,
        [step(action, record) for action, record in recorded.items()] + [step("reset_password")],
    )
    until(lambda: api.get(f"/v1/requests/{original}").json()["status"] == "completed")
    on = scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "Replace", "path": "active", "value": "True"})
    )
    assert ok(on)["active"] is True
    reversal = api.get(on.headers["Sortie-Reversal"]).json()
    assert reversal["kind"] == "reversal" and reversal["reverses"] == original
    assert reversal["reason"] == "scim_reactivated" and reversal["requested_by"] == "hr"
    assert api.get(f"/v1/requests/{original}").json()["reversed_by"] == reversal["request_id"]
    (_, command), *_ = until(
        lambda: commands(server.url, streams.REVERSAL_REQUESTED, reversal["request_id"])
    )
    assert command["restore"] == recorded
    # Nobody is there to be shown a Temporary Access Pass: none is issued.
    assert command["issue_temporary_access_pass"] is False and command["tap_public_key"] is None
    assert reversal["temporary_access_pass"] is None


def test_okta_reactivation_with_nothing_recorded_turns_sign_in_and_mail_back_on(
    scim: httpx.Client, api: httpx.Client, server: RedisServer
) -> None:
    create = {"schemas": [CORE], "userName": "back.again@okta.local", "active": True}
    user = ok(scim.post("/Users", json=create), 201)
    off = scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "replace", "value": {"active": False}})
    )
    original = off.headers["Sortie-Offboarding"].rsplit("/", 1)[1]
    answer_offboarding(server.url, original, [step("block_sign_in"), step("revoke_sessions")])
    until(lambda: api.get(f"/v1/requests/{original}").json()["status"] == "completed")
    again = scim.put(f"/Users/{user['id']}", json={**create, "id": user["id"], "groups": []})
    assert ok(again)["active"] is True
    rid = again.headers["Sortie-Reversal"].rsplit("/", 1)[1]
    (_, command), *_ = until(lambda: commands(server.url, streams.REVERSAL_REQUESTED, rid))
    assert command["restore"]["block_sign_in"] == {"account_enabled": True}
    assert set(command["restore"]["disable_mail_protocols"]["protocols"].values()) == {True}
    view = api.get(f"/v1/requests/{rid}").json()
    # Still linked both ways: the record says which offboarding was undone.
    assert view["kind"] == "reversal" and view["reverses"] == original
    assert api.get(f"/v1/requests/{original}").json()["reversed_by"] == rid
