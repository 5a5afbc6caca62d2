"""The workstation agent's wiring: its host's stream only."""

from __future__ import annotations

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import LogoutRequested, OffboardRequested, WorkstationCommandRequested
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.bootstrap import make_build as agent_build
from sortie_workstation.settings import AgentSettings


async def test_agent_subscribes_to_its_host_stream_only(redis: Redis) -> None:
    backend = FakeSessions()
    settings = AgentSettings(host="PC-7")
    parts = await agent_build(settings, backend=backend)(RedisBroker(), redis)
    [sub] = parts.subscriptions
    assert (sub.stream, sub.group, sub.dedupe) == (
        "workstation.pc-7",
        streams.GROUP_WORKSTATION,
        True,
    )
    assert set(sub.accepts) == {LogoutRequested, OffboardRequested, WorkstationCommandRequested}
    assert len(parts.background) == 1
    for hook in parts.on_stop:
        await hook()
    assert backend.closed
