"""SCIM and the console's sessions on a Redis Cluster of three primaries (issue 19).

The SCIM Users tests of test_scim.py run here unchanged against a live orchestrator with
`SORTIE_REDIS_CLUSTER=1` (create, deactivate -> one offboarding, uniqueness, filters,
ETags): every SCIM key carries the hash tag `{sortie:scim}`, so each write's script stays
in one slot. The console's sessions open, list and close with their record and index in
different slots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from sortie_orchestrator.adapters.console_store import ConsoleStore
from sortie_orchestrator.http.ui import sessions
from sortie_testkit.redis_cluster import RedisClusterGroup
from tests.orchestrator.test_scim import (
    make_user,
    test_deactivating_starts_one_offboarding,
    test_etags_guard_writes,
    test_filters_by_user_name_and_external_id,
    test_put_with_active_false_and_delete_start_offboardings,
    test_renaming_onto_a_taken_name_starts_nothing,
    test_user_name_is_unique_case_insensitively,
)
from tests.support.live import live_orchestrator

__all__ = [
    "test_deactivating_starts_one_offboarding",
    "test_etags_guard_writes",
    "test_filters_by_user_name_and_external_id",
    "test_put_with_active_false_and_delete_start_offboardings",
    "test_renaming_onto_a_taken_name_starts_nothing",
    "test_user_name_is_unique_case_insensitively",
]


@pytest.fixture(scope="module")
def base(cluster: RedisClusterGroup) -> Iterator[str]:
    with live_orchestrator(cluster.url, redis_cluster=True) as url:
        yield url


@pytest.fixture
async def cluster_redis(cluster: RedisClusterGroup) -> AsyncIterator[RedisCluster]:
    client = await RedisCluster.from_url(cluster.url).initialize()
    yield client
    await client.aclose()


async def test_a_user_and_its_indexes_share_one_slot(
    scim: httpx.Client, cluster_redis: RedisCluster
) -> None:
    user = make_user(scim, "slotted", externalId="hr-slot-1")
    names = [
        f"{{sortie:scim}}:user:{user['id']}",
        "{sortie:scim}:name:slotted",
        "{sortie:scim}:ext:hr-slot-1",
        "{sortie:scim}:users",
    ]
    assert all([await cluster_redis.exists(n) for n in names])
    assert len({cluster_redis.keyslot(n) for n in names}) == 1
    assert not await cluster_redis.exists(f"sortie:scim:user:{user['id']}")
    found = scim.get("/Users", params={"filter": 'externalId eq "hr-slot-1"'}).json()
    assert [r["id"] for r in found["Resources"]] == [user["id"]]


async def test_console_sessions_open_list_and_close_across_slots(
    cluster_redis: RedisCluster,
) -> None:
    viewer = sessions.Viewer("ada", "oidc", frozenset({"sessions:admin"}), None)
    sids = [f"sid-{i}" for i in range(12)]
    digests = [sessions.session_hash(s) for s in sids]
    # The records of these sessions lie on more than one primary.
    nodes = {cluster_redis.get_node_from_key(sessions.session_key(d)).name for d in digests}
    assert len(nodes) > 1
    for sid in sids:
        await ConsoleStore(cluster_redis).open_session(sid, viewer, ttl_s=60)
    listed = await ConsoleStore(cluster_redis).live_sessions()
    mine = [s for s in listed if s["id"] in digests]
    assert sorted(s["id"] for s in mine) == sorted(digests)
    assert all(s["name"] == "ada" and s["via"] == "oidc" for s in mine)
    assert await ConsoleStore(cluster_redis).close_session(digests[0])
    assert not await ConsoleStore(cluster_redis).close_session(digests[0])
    after = {s["id"] for s in await ConsoleStore(cluster_redis).live_sessions()}
    assert digests[0] not in after and set(digests[1:]) <= after
    assert await ConsoleStore(cluster_redis).load(digests[1]) is not None
