"""Shared by the worker tests: events, running a worker in-process, reading streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from sortie_core.broker import publish, request_key
from sortie_core.events import (
    LogoutRequested,
    OffboardRequested,
    ServiceTicket,
    SsoSession,
    Subject,
    Target,
    decode_event,
    utcnow,
)
from sortie_core.runtime import WorkerParts, running
from sortie_core.settings import ServiceSettings

Build = Callable[[Any, Redis], Awaitable[WorkerParts]]

ALICE = Subject(
    user_id="alice", upn="alice@example.org", cas_username="alice", windows_account="alice"
)


def logout(
    subject: Subject = ALICE,
    *,
    targets: tuple[Target, ...] = (Target.M365, Target.ENT, Target.WORKSTATIONS),
    tgt: str | None = None,
    tickets: list[tuple[str, str]] | None = None,
) -> LogoutRequested:
    session = None
    if tgt is not None or tickets:
        session = SsoSession(
            tgt=tgt,
            service_tickets=tuple(ServiceTicket(service=s, ticket=t) for s, t in tickets or []),
        )
    return LogoutRequested(
        request_id=uuid.uuid4(),
        subject=subject,
        targets=targets,
        sso_session=session,
        deadline=utcnow() + timedelta(seconds=30),
    )


def offboard(subject: Subject = ALICE, actions: tuple[str, ...] = ()) -> OffboardRequested:
    return OffboardRequested(
        request_id=uuid.uuid4(),
        subject=subject,
        actions=actions,
        deadline=utcnow() + timedelta(seconds=30),
    )


@contextlib.asynccontextmanager
async def running_worker(
    service: str, settings: ServiceSettings, build: Build
) -> AsyncIterator[WorkerParts]:
    """`sortie_core.runtime.run_worker`'s lifecycle, without signals or HTTP."""
    async with running(service, settings, build) as proc:
        yield proc.parts


async def command(redis: Redis, stream: str, event: Any) -> str:
    """Publish a command the way the orchestrator does: its request exists first (the
    workers refuse commands of requests never accepted)."""
    await redis.hset(request_key(event.request_id), "doc", "{}")
    return await publish(redis, stream, event)


async def read_events(redis: Redis, stream: str) -> list[Any]:
    return [decode_event(fields[b"data"]) for _, fields in await redis.xrange(stream)]


async def wait_for_events(
    redis: Redis, stream: str, count: int = 1, timeout_s: float = 10.0
) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = await read_events(redis, stream)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.02)


class Wakes:
    """Every agent wake-up published while it is open: (channel, payload) pairs."""

    def __init__(self, redis: Redis) -> None:
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.seen: list[tuple[str, str]] = []

    async def __aenter__(self) -> Wakes:
        from sortie_core.streams import AGENT_WAKE_PREFIX

        await self.pubsub.psubscribe(f"{AGENT_WAKE_PREFIX}*")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def wait(self, count: int, timeout_s: float = 10.0) -> list[tuple[str, str]]:
        """The wake-ups seen once `count` arrived (or the time ran out)."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = await self.pubsub.get_message(timeout=min(left, 0.1))
            if message is not None:
                self.seen.append((message["channel"].decode(), message["data"].decode()))
        return list(self.seen)
