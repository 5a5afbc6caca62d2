"""200 simulated agents in one process, the real orchestrator, a real redis-server: a
logout of a user with sessions on 3 hosts touches only those 3."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from sortie_testkit.fleet import Fleet
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async

AGENTS = 200
ALICE_HOSTS = ("pc-0007", "pc-0101", "pc-0199")


async def test_logout_fans_out_only_to_the_hosts_holding_a_session(
    client: httpx.AsyncClient, redis: Redis, redis_server: RedisServer
) -> None:
    fleet = Fleet(redis_server.url)
    for n in range(AGENTS):
        host = f"pc-{n:04d}"
        users = [(1, f"pupil{n}")] + ([(2, "alice")] if host in ALICE_HOSTS else [])
        fleet.add(host, users, group=f"room{n // 25}")
    await fleet.start()
    try:

        async def all_announced() -> bool:
            return await redis.scard("sortie:agents") >= AGENTS

        await wait_until_async(all_announced, 30, 0.05, "every agent announced")
        assert await redis.scard("sortie:agents") == AGENTS
        assert sorted(await redis.smembers("sortie:hosts:alice")) == [
            h.encode() for h in ALICE_HOSTS
        ]

        resp = await client.post(
            "/v1/logouts", json={"subject": {"user_id": "alice"}, "targets": ["workstations"]}
        )
        assert resp.status_code == 202

        async def phase1_done() -> dict | None:
            view = (await client.get(resp.headers["Location"])).json()
            return view if view["status"] != "in_progress" else None

        view = await wait_until_async(phase1_done, 20, 0.05, "phase 1 done")
        assert sorted(view["services"]) == [f"workstation:{h}" for h in ALICE_HOSTS]
        assert {s["state"] for s in view["services"].values()} == {"reported"}
        assert view["status"] == "sso_logout"  # phase 1 done; no CAS worker runs here
        touched = sorted(h for h, _t in fleet.handled)
        assert touched == list(ALICE_HOSTS)
        for host in ALICE_HOSTS:
            assert [u.user for u in fleet.backend(host).sessions.values()] == [
                f"pupil{int(host[3:])}"
            ]
        assert all(not fleet.backend(h).calls for h in fleet.agents if h not in ALICE_HOSTS)
        # The orchestrator's index followed the agents' new presence: alice is nowhere now.

        async def alice_nowhere() -> bool:
            return await redis.scard("sortie:hosts:alice") == 0

        await wait_until_async(alice_nowhere, 10, 0.05, "alice's hosts index emptied")
    finally:
        await fleet.stop()
