"""The scim2-tester compliance suite against a real orchestrator over HTTP."""

from __future__ import annotations

import collections
from datetime import UTC, datetime

from httpx2 import Client
from pydantic import Field
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import ScimProvider
from scim2_tester import Status, check_server

from sortie_orchestrator.http.scim import model as scim_model
from tests.support.live import SCIM_TOKEN, live_orchestrator


class SortieUserWithExample(scim_model.SortieUser):
    # scim2-tester fills a dateTime it knows no example for with a random string.
    offboard_at: datetime | None = Field(None, examples=[datetime(2027, 6, 30, 18, tzinfo=UTC)])


# Sortie's own description of its resources (what /Schemas publishes), the date example
# aside; the discovery checks still read what the server publishes.
PROVIDER = ScimProvider(
    models=[
        scim_model.CoreUser,
        scim_model.Enterprise,
        SortieUserWithExample,
        scim_model.Group,
    ],
    resource_types=scim_model.PROVIDER.resource_types,
    config=scim_model.CONFIG,
    policy=scim_model.POLICY,
)


def test_scim2_tester_finds_no_error() -> None:
    with live_orchestrator() as url:
        http = Client(base_url=f"{url}/scim/v2", headers={"Authorization": f"Bearer {SCIM_TOKEN}"})
        results = check_server(SyncSCIMClient(http, provider=PROVIDER))
    counts = collections.Counter(r.status.name for r in results)
    failures = [
        f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status != Status.SUCCESS
    ]
    print(f"scim2-tester: {dict(counts)}")
    assert failures == []
    # Discovery, CRUD on Users and Groups, attribute selection, search, PATCH all ran.
    assert counts["SUCCESS"] >= 140
    titles = {r.title for r in results}
    assert {"object_creation", "object_replacement", "object_deletion"} <= titles
    assert {"check_add_attribute", "check_remove_attribute", "check_replace_attribute"} <= titles
    groups = [r for r in results if "Group" in str(r.resource_type or "")]
    assert groups, "no check ran on Groups"
