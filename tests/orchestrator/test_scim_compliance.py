"""The scim2-tester compliance suite against a real orchestrator over HTTP."""

from __future__ import annotations

import collections

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.intake.live import SCIM_TOKEN, live_orchestrator


def test_scim2_tester_finds_no_error() -> None:
    with live_orchestrator() as url:
        http = Client(base_url=f"{url}/scim/v2", headers={"Authorization": f"Bearer {SCIM_TOKEN}"})
        results = check_server(SyncSCIMClient(http))
    counts = collections.Counter(r.status.name for r in results)
    failures = [
        f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status != Status.SUCCESS
    ]
    print(f"scim2-tester: {dict(counts)}")
    assert failures == []
    # Discovery, CRUD, attribute selection, search and the PATCH checks all ran.
    assert counts["SUCCESS"] >= 45
    titles = {r.title for r in results}
    assert {"object_creation", "object_replacement", "object_deletion"} <= titles
    assert {"check_add_attribute", "check_remove_attribute", "check_replace_attribute"} <= titles
