"""Many simulated workstation agents in one process, for scale tests and benchmarks.

Each host is a real `Agent` (its handlers, its presence record, its reports) with an
in-memory session backend; instead of one broker per agent, one XREADGROUP reads every
host's stream at once and hands each command to the broker's path with its host's
subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from faststream.redis import RedisBroker
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from sortie_core import streams
from sortie_core.broker import Consumers
from sortie_core.events import decode_event
from sortie_core.steps import RetryPolicy
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.agent import Agent

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002)


class Fleet:
    def __init__(self, redis_url: str, *, heartbeat_s: float = 600.0) -> None:
        # One bounded pool for every agent, as a gateway hosting many would have.
        self.redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(
                redis_url, max_connections=64, timeout=60
            )
        )
        self.heartbeat_s = heartbeat_s
        self.agents: dict[str, Agent] = {}
        self.handled: list[tuple[str, str]] = []  # (host, event type)
        self._task: asyncio.Task[None] | None = None
        # The message path only (`process`): no subscriber of its own is registered.
        self.path = Consumers(RedisBroker(redis_url), self.redis, "fleet", [])

    def add(
        self, host: str, sessions: Iterable[tuple[int, str]], group: str | None = None
    ) -> FakeSessions:
        backend = FakeSessions()
        for sid, user in sessions:
            backend.open(sid, user)
        self.agents[host] = Agent(
            host=host,
            backend=backend,
            redis=self.redis,
            policy=POLICY,
            heartbeat_s=self.heartbeat_s,
            group=group,
        )
        return backend

    def backend(self, host: str) -> FakeSessions:
        backend = self.agents[host].backend
        assert isinstance(backend, FakeSessions)
        return backend

    async def start(self, chunk: int = 50) -> None:
        """Create the agents' groups, announce every agent, then start reading."""
        hosts = list(self.agents)
        for i in range(0, len(hosts), chunk):
            async with self.redis.pipeline(transaction=False) as pipe:
                for host in hosts[i : i + chunk]:
                    pipe.xgroup_create(
                        streams.workstation_stream(host),
                        streams.GROUP_WORKSTATION,
                        "0",
                        mkstream=True,
                    )
                for result in await pipe.execute(raise_on_error=False):
                    if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                        raise result
            await asyncio.gather(*(self.agents[h].refresh_presence() for h in hosts[i : i + chunk]))
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()

    async def _read(self) -> None:
        keys: dict[Any, Any] = {streams.workstation_stream(h): ">" for h in self.agents}
        while True:
            batches: Any = await self.redis.xreadgroup(
                streams.GROUP_WORKSTATION, "fleet", keys, count=50, block=100
            )
            jobs = []
            for stream, entries in batches or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                host = name.removeprefix(streams.WORKSTATION_PREFIX)
                for entry_id, fields in entries:
                    jobs.append(self._handle(host, name, entry_id, fields))
            await asyncio.gather(*jobs)

    async def _handle(
        self, host: str, stream: str, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> None:
        event = decode_event(fields[b"data"])
        self.handled.append((host, event.type))
        [sub] = self.agents[host].subscriptions()
        await self.path.process(sub, entry_id.decode(), fields, 1)
