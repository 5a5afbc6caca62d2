"""SCIM Users against a real orchestrator: deprovisioning starts offboardings, filters,
uniqueness, and bad input refused in SCIM's error format without changing anything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.live import READER, live_orchestrator

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_orchestrator() as url:
        yield url


def make_user(scim: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "schemas": [USER],
        "userName": name,
        "emails": [{"value": f"{name}@lycee.example", "type": "work", "primary": True}],
        **extra,
    }
    resp = scim.post("/Users", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/scim+json")
    return resp.json()


def assert_scim_error(resp: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/scim+json")
    body = resp.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    if scim_type:
        assert body["scimType"] == scim_type


def total(scim: httpx.Client) -> int:
    return int(scim.get("/Users", params={"count": 0}).json()["totalResults"])


def test_deactivating_starts_one_offboarding(scim: httpx.Client, api: httpx.Client) -> None:
    user = make_user(scim, "jdupont", externalId="hr-1001")
    # What Entra ID sends: capitalised op, the boolean as a string.
    op = {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    resp = scim.patch(f"/Users/{user['id']}", json=op)
    assert resp.status_code == 200, resp.text
    assert resp.json()["active"] is False
    link = resp.headers["Sortie-Offboarding"]
    view = api.get(link).json()
    assert view["kind"] == "offboard"
    assert view["reason"] == "scim_deactivated"
    assert view["subject"]["user_id"] == "jdupont"
    assert view["subject"]["upn"] == "jdupont@lycee.example"
    assert view["requested_by"] == "hr"
    # Deactivating an inactive user again starts nothing new.
    again = scim.patch(f"/Users/{user['id']}", json=op)
    assert again.status_code == 200 and "Sortie-Offboarding" not in again.headers
    listed = api.get("/v1/requests", params={"subject": "jdupont"}).json()["items"]
    assert [i["request_id"] for i in listed] == [view["request_id"]]


def test_put_with_active_false_and_delete_start_offboardings(
    scim: httpx.Client, api: httpx.Client
) -> None:
    a = make_user(scim, "mleroy")
    put = scim.put(
        f"/Users/{a['id']}", json={"schemas": [USER], "userName": "mleroy", "active": False}
    )
    assert put.status_code == 200 and "Sortie-Offboarding" in put.headers
    # Deleting a user who is already inactive: the offboarding already happened.
    gone = scim.delete(f"/Users/{a['id']}")
    assert gone.status_code == 204 and "Sortie-Offboarding" not in gone.headers
    assert_scim_error(scim.get(f"/Users/{a['id']}"), 404)

    b = make_user(scim, "pmartin")
    deleted = scim.delete(f"/Users/{b['id']}")
    assert deleted.status_code == 204
    view = api.get(deleted.headers["Sortie-Offboarding"]).json()
    assert view["reason"] == "scim_deleted" and view["subject"]["user_id"] == "pmartin"
    # The userName is free again.
    make_user(scim, "pmartin")


def test_filters_by_user_name_and_external_id(scim: httpx.Client) -> None:
    u = make_user(scim, "Claire.Petit", externalId="hr-77")
    make_user(scim, "claire.petitjean", externalId="hr-78")
    by_name = scim.get("/Users", params={"filter": 'userName eq "claire.petit"'}).json()
    assert [r["id"] for r in by_name["Resources"]] == [u["id"]]
    assert by_name["totalResults"] == 1
    by_ext = scim.get("/Users", params={"filter": 'externalId eq "hr-77"'}).json()
    assert [r["id"] for r in by_ext["Resources"]] == [u["id"]]
    # externalId is case-exact.
    assert (
        scim.get("/Users", params={"filter": 'externalId eq "HR-77"'}).json()["totalResults"] == 0
    )
    picked = scim.get(f"/Users/{u['id']}", params={"attributes": "userName"}).json()
    assert set(picked) == {"schemas", "id", "userName"}
    for bad in ('shoeSize eq "44"', "userName eq", 'userName zz "x"'):
        assert_scim_error(scim.get("/Users", params={"filter": bad}), 400, "invalidFilter")


def test_user_name_is_unique_case_insensitively(scim: httpx.Client) -> None:
    make_user(scim, "lbernard")
    before = total(scim)
    assert_scim_error(
        scim.post("/Users", json={"schemas": [USER], "userName": "LBernard"}), 409, "uniqueness"
    )
    assert total(scim) == before


@pytest.mark.parametrize(
    ("content", "ctype", "status", "scim_type"),
    [
        (
            b'{"schemas": [], "userName": "x", "shoeSize": 44}',
            "application/scim+json",
            400,
            "invalidSyntax",
        ),
        (b'{"schemas": [], "userName": ""}', "application/scim+json", 400, "invalidValue"),
        (
            b'{"schemas": [], "userName": "x", "active": "maybe"}',
            "application/scim+json",
            400,
            "invalidValue",
        ),
        (b'{"userName": ', "application/scim+json", 400, "invalidSyntax"),
        (b"[1, 2]", "application/scim+json", 400, "invalidSyntax"),
        (b'{"userName": "x"}', "text/plain", 415, None),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    scim: httpx.Client, content: bytes, ctype: str, status: int, scim_type: str | None
) -> None:
    before = total(scim)
    resp = scim.post("/Users", content=content, headers={"Content-Type": ctype})
    assert_scim_error(resp, status, scim_type)
    assert total(scim) == before


def test_bad_patch_changes_nothing(scim: httpx.Client) -> None:
    u = make_user(scim, "adurand")
    for op in (
        {"op": "replace", "path": "shoeSize", "value": 1},
        {"op": "move", "path": "active", "value": False},
        {"op": "remove", "path": "userName"},
        {"op": "replace", "path": "active", "value": "perhaps"},
    ):
        resp = scim.patch(f"/Users/{u['id']}", json={"schemas": [PATCH], "Operations": [op]})
        assert_scim_error(resp, 400)
    after = scim.get(f"/Users/{u['id']}").json()
    assert after["meta"]["version"] == u["meta"]["version"]
    assert "active" not in after


def test_tokens_are_required_and_scoped(base: str) -> None:
    anon = httpx.get(f"{base}/scim/v2/Users")
    assert_scim_error(anon, 401)
    assert anon.headers["www-authenticate"].startswith("Bearer")
    reader = httpx.get(f"{base}/scim/v2/Users", headers={"Authorization": f"Bearer {READER}"})
    assert_scim_error(reader, 403)


def test_unknown_paths_and_methods(scim: httpx.Client) -> None:
    assert_scim_error(scim.get("/Devices"), 404)
    assert_scim_error(scim.delete("/Groups"), 405)
    assert_scim_error(scim.post("/ServiceProviderConfig", json={}), 405)
    assert_scim_error(scim.delete("/Users"), 405)


def test_search_needs_its_schema(scim: httpx.Client) -> None:
    # Found by the fuzz run: a number where the list of schemas belongs.
    for body in ({"schemas": 1.5e308}, {"schemas": ["x"]}, {}):
        assert_scim_error(scim.post("/.search", json=body), 400, "invalidSyntax")
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    found = scim.post("/Users/.search", json={"schemas": [search], "count": 1})
    assert found.status_code == 200 and found.json()["itemsPerPage"] <= 1


def test_renaming_onto_a_taken_name_starts_nothing(scim: httpx.Client, api: httpx.Client) -> None:
    make_user(scim, "ngarnier")
    other = make_user(scim, "ogarnier")
    put = {"schemas": [USER], "userName": "NGarnier", "active": False}
    assert_scim_error(scim.put(f"/Users/{other['id']}", json=put), 409, "uniqueness")
    assert api.get("/v1/requests", params={"subject": "ogarnier"}).json()["items"] == []
    assert api.get("/v1/requests", params={"subject": "ngarnier"}).json()["items"] == []


def test_etags_guard_writes(scim: httpx.Client) -> None:
    u = make_user(scim, "etag.user")
    version = u["meta"]["version"]
    assert scim.get(f"/Users/{u['id']}").headers["etag"] == version
    op = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "CPE"}]}
    stale = scim.patch(f"/Users/{u['id']}", json=op, headers={"If-Match": 'W/"999"'})
    assert_scim_error(stale, 412)
    assert_scim_error(scim.delete(f"/Users/{u['id']}", headers={"If-Match": 'W/"999"'}), 412)
    fresh = scim.patch(f"/Users/{u['id']}", json=op, headers={"If-Match": version})
    assert fresh.status_code == 200 and fresh.json()["title"] == "CPE"
    assert fresh.headers["etag"] != version == u["meta"]["version"]
    put = {"schemas": [USER], "userName": "etag.user"}
    assert_scim_error(scim.put(f"/Users/{u['id']}", json=put, headers={"If-Match": version}), 412)


def test_filters_paging_and_attribute_selection(scim: httpx.Client) -> None:
    a = make_user(scim, "flt.alpha", title="Teacher", displayName="Alpha")
    b = make_user(scim, "flt.beta", title="Nurse")
    c = make_user(scim, "flt.gamma")

    def ids(expr: str, **params: Any) -> list[str]:
        resp = scim.get("/Users", params={"filter": expr, **params})
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["Resources"]]

    assert ids('userName sw "flt." and title pr') == [a["id"], b["id"]]
    assert ids('userName sw "flt." and not (title pr)') == [c["id"]]
    assert ids('title eq "teacher" or title eq "Nurse"') == [a["id"], b["id"]]
    assert ids('userName co "amm"') == [c["id"]]
    assert ids('userName sw "flt." and title ne "Nurse"') == [a["id"], c["id"]]
    assert ids('emails[type eq "work" and value ew "beta@lycee.example"]') == [b["id"]]
    page = scim.get(
        "/Users", params={"filter": 'userName sw "flt."', "startIndex": 2, "count": 1}
    ).json()
    assert page["totalResults"] == 3 and page["startIndex"] == 2
    assert [r["id"] for r in page["Resources"]] == [b["id"]]
    picked = scim.get(
        "/Users", params={"filter": f'id eq "{a["id"]}"', "attributes": "displayName"}
    )
    assert picked.json()["Resources"] == [
        {"schemas": [USER], "id": a["id"], "displayName": "Alpha"}
    ]
    dropped = scim.get(f"/Users/{a['id']}", params={"excludedAttributes": "emails,title"}).json()
    assert "emails" not in dropped and "title" not in dropped and dropped["userName"] == "flt.alpha"


def test_groups_refuse_unknown_members_and_lose_deleted_ones(scim: httpx.Client) -> None:
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Profs"}
    bad = scim.post("/Groups", json={**group, "members": [{"value": "no-such-user"}]})
    assert_scim_error(bad, 400, "invalidValue")
    u = make_user(scim, "member.one")
    made = scim.post("/Groups", json={**group, "members": [{"value": u["id"]}]})
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    assert_scim_error(scim.post("/Groups", json=group), 409, "uniqueness")
    assert scim.delete(f"/Users/{u['id']}").status_code == 204
    assert "members" not in scim.get(f"/Groups/{gid}").json()


def test_bad_response_parameters_refuse_the_write(scim: httpx.Client) -> None:
    before = total(scim)
    body = {"schemas": [USER], "userName": "params.user"}
    refused = scim.post("/Users", json=body, params={"attributes": "shoeSize[type eq 1]"})
    assert_scim_error(refused, 400)
    assert total(scim) == before
