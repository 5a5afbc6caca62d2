"""The 202 waits for a replica (issue 14 item 4, issue 19 item 1): with
`durable_replicas`, accepting a request answers only once WAIT saw a replica hold it, on a
real primary and replica. A stalled replica makes the accept fail `NotDurable` (a 503);
the request is stored all the same, and the client's retry with its Idempotency-Key gets
this very request once the replica caught up."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from sortie_core.events import Target
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.saga_store import NotDurable, SagaStore
from sortie_orchestrator.bootstrap import make_deps
from sortie_orchestrator.saga import Timeouts
from sortie_testkit.redis_sentinel import replicated_pair
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.test_replicas import ALICE


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with replicated_pair() as servers:
        yield servers


async def test_accept_waits_for_a_replica(pair: tuple[RedisServer, RedisServer]) -> None:
    primary, replica = pair
    redis = Redis.from_url(primary.url)
    deps = make_deps(
        redis,
        SagaStore(redis, 3600, 3600, durable_replicas=1, durable_timeout_ms=300),
        Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60)),
    )

    async def accept() -> tuple[bool, uuid.UUID]:
        return await handlers.accept_logout(
            deps,
            subject=ALICE,
            reason="t",
            targets=[Target.M365],
            sso_session=None,
            idempotency_key="k-1",
            principal="t",
        )

    assert replica.proc is not None
    try:
        os.kill(replica.proc.pid, signal.SIGSTOP)
        with pytest.raises(NotDurable):
            await accept()
        os.kill(replica.proc.pid, signal.SIGCONT)
        # The client retries on 503, as it is told to, until the replica caught up.
        for _ in range(50):
            with contextlib.suppress(NotDurable):
                created, rid = await accept()
                break
        else:
            raise AssertionError("the replica never acknowledged the request")
        assert created is False  # the first attempt's request, now on the replica
        async with Redis(port=replica.port) as on_replica:
            assert await on_replica.exists(f"sortie:req:{{{rid}}}") == 1
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
        await redis.aclose()
