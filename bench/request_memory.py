"""Memory per finished request in Redis, and how fast the saga store accepts and finishes
requests. Starts its own redis-server; prints figures.

    .venv/bin/python bench/request_memory.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_core.events import (
    Discovery,
    Evidence,
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoSession,
    StepItem,
    StepResult,
    Subject,
    Target,
    Verification,
)
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.bootstrap import make_deps
from sortie_orchestrator.saga import Timeouts
from sortie_testkit.redis_server import RedisServer


def step(
    action: str,
    verification: Verification = Verification.VERIFIED,
    evidence: Evidence | None = None,
    items: tuple[StepItem, ...] = (),
) -> StepResult:
    now = datetime.now(UTC)
    return StepResult(
        action=action,
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now,
        verification=verification,
        evidence=evidence,
        items=items,
    )


def graph(prop: str, value: str) -> Evidence:
    return Evidence(
        source=f"graph GET /users/{{id}}?$select={prop}",
        observed={prop: value},
        read_at=datetime.now(UTC),
    )


def slo(app: str, i: int) -> StepResult:
    """A CAS single logout, acknowledged by the application, one item per ticket."""
    ack = Evidence(
        source=f"POST logoutRequest to https://{app}.ent.example/cas/logout",
        observed={"status": 200},
        read_at=datetime.now(UTC),
    )
    item = StepItem(ref=f"1:{app}.ent.example:{i:012x}", outcome=Outcome.SUCCEEDED)
    return step(f"app_logout:{app}", Verification.ACKNOWLEDGED, ack, (item,))


async def one(deps: handlers.Deps, i: int) -> None:
    """A typical ENT logout: M365 revoked and read back, two CAS SLO applications with a
    ticket each and two that log out by identity (acknowledged), the SSO session destroyed
    and read back from the CAS."""
    subject = Subject(user_id=f"user{i}", upn=f"user{i}@example.org", cas_username=f"user{i}")
    sso = SsoSession(tgt=f"TGT-{i}-bench")
    _, rid = await handlers.accept_logout(
        deps,
        subject=subject,
        reason="user_logout",
        targets=[Target.M365, Target.ENT],
        sso_session=sso,
        idempotency_key=None,
        principal="ent",
    )
    now = datetime.now(UTC).isoformat()
    await handlers.on_revocation(
        deps,
        RevocationCompleted(
            request_id=rid,
            subject=subject,
            service="m365",
            steps=(
                step("revoke_sessions", evidence=graph("signInSessionsValidFromDateTime", now)),
            ),
            discovery=Discovery(
                source="graph",
                identity=f"{uuid.uuid4()} user{i}@example.org",
                identity_tried=("upn",),
            ),
        ),
    )
    identity = Evidence(
        source="POST logout_token (OIDC back-channel)",
        observed={"status": 200},
        read_at=datetime.now(UTC),
    )
    await handlers.on_revocation(
        deps,
        RevocationCompleted(
            request_id=rid,
            subject=subject,
            service="ent",
            steps=(
                slo("esper", i),
                slo("escada", i),
                step("app_logout:mer", Verification.ACKNOWLEDGED, identity),
                step("app_logout:ism", Verification.ACKNOWLEDGED, identity),
            ),
            discovery=Discovery(
                source="cas ssoSessions actuator",
                sso_sessions_found=1,
                applications=("esper", "escada"),
                tickets_found=2,
                tickets_from_caller=2,
            ),
        ),
    )
    cas = Evidence(
        source="cas: GET ssoSessions/users/{username}",
        observed={"tgt": f"1:{i:012x}", "tgt_known": False},
        read_at=datetime.now(UTC),
    )
    await handlers.on_sso_completed(
        deps,
        SsoLogoutCompleted(
            request_id=rid,
            subject=subject,
            steps=(step("destroy_sso_session", evidence=cas),),
            discovery=Discovery(
                source="cas ssoSessions actuator", sso_sessions_found=1, sso_sessions_ended=1
            ),
        ),
    )


async def main(n: int, concurrency: int) -> None:
    server = RedisServer().start()
    try:
        redis = Redis.from_url(server.url)
        deps = make_deps(
            redis,
            SagaStore(redis, retention_s=90 * 86400, idempotency_ttl_s=86400),
            Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60)),
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
        # The pool's connections (up to `concurrency`, each with its buffers) are the
        # client's, not the requests': closed before measuring, as they were at `base`.
        await redis.connection_pool.disconnect()
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
            f"(state + listing indexes; a typical logout: 5 phase-1 steps with evidence + SSO)"
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
