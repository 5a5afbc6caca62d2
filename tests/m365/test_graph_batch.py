"""`$batch` through msgraph-sdk's request builders against the Graph simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from sortie_core.errors import ThrottledError
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_simulators.graph_model import iso_s
from tests.m365.conftest import GraphSim, make_directory


@pytest.fixture
async def batching(graph_sim: GraphSim) -> AsyncIterator[GraphSdkDirectory]:
    for n in range(45):
        graph_sim.sim.add_user(f"u{n:02d}@example.org")
    d = make_directory(graph_sim.url, batch_linger_s=0.05)
    yield d
    await d.aclose()


def _batches(graph_sim: GraphSim) -> list[list[dict[str, object]]]:
    return [
        b["requests"]
        for b in graph_sim.recorder.json_bodies()
        if isinstance(b, dict) and "requests" in b
    ]


async def test_concurrent_writes_share_batches_of_at_most_20(
    graph_sim: GraphSim, batching: GraphSdkDirectory
) -> None:
    users = [f"u{n:02d}@example.org" for n in range(45)]

    async def offboard(upn: str) -> None:
        user = await batching.get_user(upn)
        await batching.block_sign_in(user.id)
        await batching.reset_password(user.id, SecretStr("Pw1!" * 9))
        await batching.revoke_sessions(user.id)

    await asyncio.gather(*(offboard(u) for u in users))
    for upn in users:
        state = graph_sim.sim.find(upn)
        assert state is not None
        assert (state.account_enabled, state.force_change, state.revocation_count) == (
            False,
            True,
            1,
        )
    batches = _batches(graph_sim)
    assert batches, "writes went out as $batch"
    assert all(2 <= len(b) <= 20 for b in batches)
    # Lookups (GET) and writes both share batches: at most 4 requests per user in all.
    assert sum(len(b) for b in batches) <= 4 * len(users)
    assert {item["method"] for b in batches for item in b} >= {"GET", "PATCH", "POST"}
    # A $batch never holds two requests for one user (its steps are ordered).
    for batch in batches:
        urls = [str(item["url"]).split("/")[2] for item in batch]
        assert len(urls) == len(set(urls))
    # Far fewer HTTP calls than writes.
    assert len(batches) < len(users)


async def test_a_lone_write_goes_with_its_read_back(
    graph_sim: GraphSim, batching: GraphSdkDirectory
) -> None:
    upn, prop = "u00@example.org", "signInSessionsValidFromDateTime"
    await batching.revoke_sessions(upn)
    assert _batches(graph_sim) == [
        [
            {"id": "0", "method": "POST", "url": "/users/u00%40example.org/revokeSignInSessions"},
            {
                "id": "read",
                "method": "GET",
                "url": f"/users/u00%40example.org?%24select={prop}",
                "dependsOn": ["0"],
            },
        ]
    ]
    state = graph_sim.sim.find(upn)
    assert state is not None and state.revocation_count == 1
    sent = len(graph_sim.recorder.bodies)
    # The step's read-back is the one Graph answered after the write: no other request.
    found = await batching.read_user(upn, [prop])
    assert found[prop] == iso_s(state.sign_in_sessions_valid_from)
    assert len(graph_sim.recorder.bodies) == sent
    # Once: a second read goes to Graph.
    assert (await batching.read_user(upn, [prop]))[prop] == found[prop]
    assert len(graph_sim.recorder.bodies) == sent + 1


async def test_a_lone_write_without_a_read_back_goes_by_itself(
    graph_sim: GraphSim, batching: GraphSdkDirectory
) -> None:
    assert (await batching.get_user("u00@example.org")).upn == "u00@example.org"
    assert _batches(graph_sim) == []
    assert len(graph_sim.recorder.bodies) == 1


async def test_throttled_items_inside_a_batch_carry_retry_after(
    graph_sim: GraphSim, batching: GraphSdkDirectory
) -> None:
    graph_sim.sim.configure(throttle_writes_per_s=5)
    users = [f"u{n:02d}@example.org" for n in range(20)]
    results = await asyncio.gather(
        *(batching.revoke_sessions(u) for u in users), return_exceptions=True
    )
    throttled = [r for r in results if isinstance(r, ThrottledError)]
    done = [r for r in results if r is None]
    assert len(done) == 5 and len(throttled) == 15
    assert all(t.code == "graph_throttled" and (t.retry_after or 0) >= 1 for t in throttled)
    assert sum(graph_sim.sim.find(u).revocation_count for u in users) == 5  # type: ignore[union-attr]
