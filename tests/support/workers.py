"""Shared by the worker tests: events, running a worker in-process, reading streams."""

from __future__ import annotations

import contextlib
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
from sortie_core.streams import AGENT_WAKE_PREFIX
from sortie_testkit.waiting import wait_until_async

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
    """The stream's events once there are at least `count` (a failure after `timeout_s`)."""

    async def enough() -> list[Any] | None:
        events = await read_events(redis, stream)
        return events if len(events) >= count else None

    found: list[Any] = await wait_until_async(enough, timeout_s, what=f"{count} on {stream}")
    return found


async def drained(redis: Redis, stream: str, group: str) -> bool:
    """Whether `group` was handed every entry of `stream` and acknowledged them all: what
    its consumer does for them (reports included) is done."""
    last = await redis.xrevrange(stream, count=1)
    info = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}.get(group)
    return (
        bool(last)
        and info is not None
        and (info["pending"], info["last-delivered-id"])
        == (
            0,
            last[0][0],
        )
    )


async def wait_drained(redis: Redis, stream: str, group: str, timeout_s: float = 10.0) -> None:
    """Until `drained`: then "nothing else came" can be asserted."""
    await wait_until_async(lambda: drained(redis, stream, group), timeout_s, what=stream)


# Published by the test itself: no agent is called so (host names are plain labels).
MARKER_CHANNEL = f"{AGENT_WAKE_PREFIX}__marker__"


class Wakes:
    """Every agent wake-up published while it is open: (channel, payload) pairs."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.seen: list[tuple[str, str]] = []

    async def __aenter__(self) -> Wakes:
        await self.pubsub.psubscribe(f"{AGENT_WAKE_PREFIX}*")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def _read(self) -> tuple[str, str] | None:
        message = await self.pubsub.get_message(timeout=0.1)
        if message is None:
            return None
        return message["channel"].decode(), message["data"].decode()

    async def wait(self, count: int, timeout_s: float = 10.0) -> list[tuple[str, str]]:
        """The wake-ups seen once `count` arrived (a failure after `timeout_s`)."""

        async def enough() -> bool:
            if len(self.seen) < count and (wake := await self._read()) is not None:
                self.seen.append(wake)
            return len(self.seen) >= count

        await wait_until_async(enough, timeout_s, 0, f"{count} wake-ups")
        return list(self.seen)

    async def settled(self, timeout_s: float = 10.0) -> list[tuple[str, str]]:
        """Every wake-up published before this call: a marker published now is delivered
        after them (Redis delivers one connection's messages in order)."""
        token = uuid.uuid4().hex
        await self.redis.publish(MARKER_CHANNEL, token)
        marker = (MARKER_CHANNEL, token)

        async def marker_seen() -> bool:
            if (wake := await self._read()) is not None and wake != marker:
                self.seen.append(wake)
            return wake == marker

        await wait_until_async(marker_seen, timeout_s, 0, "the marker wake-up")
        return list(self.seen)
