"""Memory per finished request in Redis, and how fast the saga store accepts and finishes
requests. Starts its own redis-server; prints figures.

    .venv/bin/python bench/request_memory.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_core.events import (
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoSession,
    StepResult,
    Subject,
    Target,
    Verification,
)
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.presence import PresenceIndex
from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.saga import Timeouts
from tests.redis_server import RedisServer


def steps(*actions: str) -> tuple[StepResult, ...]:
    now = datetime.now(UTC)
    return tuple(
        StepResult(
            action=a,
            outcome=Outcome.SUCCEEDED,
            started_at=now,
            finished_at=now,
            verification=Verification.VERIFIED,
        )
        for a in actions
    )


async def one(deps: handlers.Deps, i: int) -> None:
    subject = Subject(user_id=f"user{i}", upn=f"user{i}@example.org", cas_username=f"user{i}")
    sso = SsoSession(tgt=f"TGT-{i}-bench")
    _, rid = await handlers.accept_logout(
        deps,
        subject=subject,
        reason="bench",
        targets=[Target.M365, Target.ENT],
        sso_session=sso,
        idempotency_key=None,
        principal="bench",
    )
    await handlers.on_revocation(
        deps,
        RevocationCompleted(
            request_id=rid, subject=subject, service="m365", steps=steps("revoke_sessions")
        ),
    )
    await handlers.on_revocation(
        deps,
        RevocationCompleted(
            request_id=rid,
            subject=subject,
            service="ent",
            steps=steps("app_logout:esper", "app_logout:escada", "app_logout:mer"),
        ),
    )
    await handlers.on_sso_completed(
        deps,
        SsoLogoutCompleted(request_id=rid, subject=subject, steps=steps("destroy_sso_session")),
    )


async def main(n: int, concurrency: int) -> None:
    server = RedisServer().start()
    try:
        redis = Redis.from_url(server.url)
        deps = handlers.Deps(
            store=SagaStore(redis, retention_s=90 * 86400, idempotency_ttl_s=86400),
            presence=PresenceIndex(redis),
            timeouts=Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60)),
        )
        await redis.ping()
        base = int((await redis.info("memory"))["used_memory"])
        sem = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> None:
            async with sem:
                await one(deps, i)

        t0 = time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(n)))
        wall = time.perf_counter() - t0
        # The streams are trimmed in production once no group needs them; count the saga
        # state and its indexes only.
        for stream in ("logout.requested", "sso.logout.requested", "request.finished"):
            await redis.delete(stream)
        used = int((await redis.info("memory"))["used_memory"])
        active = await redis.scard("sortie:active:logout")
        sample = await redis.keys("sortie:req:*")
        print(f"requests finished          {n}")
        print(
            f"wall time                  {wall:.2f} s  ({n / wall:.0f} requests/s, "
            f"4 transitions each, concurrency {concurrency})"
        )
        print(f"still in flight            {active}")
        print(
            f"redis memory per request   {(used - base) / n:.0f} bytes "
            f"(state + listing indexes, 4 phase-1 steps + SSO step)"
        )
        print(
            f"request keys with a TTL    {sum([await redis.ttl(k) > 0 for k in sample[:100]])}"
            f"/{min(100, len(sample))} sampled"
        )
        await redis.aclose()
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
