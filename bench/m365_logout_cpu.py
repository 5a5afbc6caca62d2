"""The Microsoft 365 worker's own CPU per logout, without the message path: `handle_logout`
(user lookup, `revokeSignInSessions`, read-back) on the msgraph-sdk adapter and the
Redis-shared write quota, against the Graph simulator in its own process (no latency).
Prints the CPU ms this process (and the simulator) spent per logout, with so many logouts
in flight (few: most calls go alone; many: they share `$batch`es), and the Graph requests
per logout.

    .venv/bin/python bench/m365_logout_cpu.py [--users 3000] [--in-flight 4 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from e2e import cpu_s  # noqa: E402
from m365_profile import start_graph, start_redis  # noqa: E402

from sortie_core.events import LogoutRequested, Subject, Target, utcnow  # noqa: E402
from sortie_core.runtime import run as run_loop  # noqa: E402
from sortie_core.steps import RetryPolicy  # noqa: E402
from sortie_m365.bootstrap import graph_directory, identity_config  # noqa: E402
from sortie_m365.handlers import handle_logout  # noqa: E402
from sortie_m365.settings import M365Settings  # noqa: E402


async def run(graph_url: str, redis_url: str, users: range, in_flight: int, sim_pid: int) -> None:
    settings = M365Settings(
        redis_url=SecretStr(redis_url),
        graph_url=graph_url,
        graph_token=SecretStr("bench-token"),
        tenant_writes_per_s=100_000,
        concurrency=max(in_flight, 1) * 2,
        tenant_key=f"bench-{uuid.uuid4().hex[:8]}",
    )
    redis = Redis.from_url(redis_url)
    directory = graph_directory(settings, redis)
    identity = identity_config(settings)
    policy = RetryPolicy(max_attempts=4, base_s=0.05, max_s=0.5)
    slots = asyncio.Semaphore(in_flight)
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        async with slots:
            event = LogoutRequested(
                request_id=uuid.uuid4(),
                subject=Subject(user_id=f"bench{n:05d}", upn=f"bench{n:05d}@example.org"),
                reason="bench",
                targets=(Target.M365,),
                deadline=utcnow() + timedelta(hours=1),
            )
            result = await handle_logout(
                event, directory=directory, policy=policy, identity=identity
            )
            if result is None or not all(s.done for s in result.steps):
                failed += 1

    async with httpx.AsyncClient(base_url=graph_url) as admin:
        await admin.post("/_sim/reset-stats")
        # Warm up (connections, imports, the token), not counted.
        await asyncio.gather(*(one(n) for n in users[:in_flight]))
        await admin.post("/_sim/reset-stats")
        batches0 = directory.batcher.batches_sent if directory.batcher else 0
        counted = users[in_flight:]
        cpu0, wall0, sim0 = time.process_time(), time.monotonic(), cpu_s(sim_pid)
        await asyncio.gather(*(one(n) for n in counted))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        sim = cpu_s(sim_pid) - sim0
        stats = (await admin.get("/_sim/stats")).json()
    batches = (directory.batcher.batches_sent if directory.batcher else 0) - batches0
    await directory.aclose()
    await redis.aclose()
    n = len(counted)
    print(
        f"in flight {in_flight:3d}: {1000 * cpu / n:.2f} CPU ms per logout "
        f"(the simulator: {1000 * sim / n:.2f}), "
        f"{n / wall:.0f} logouts/s, Graph operations {stats['requests'] / n:.2f} per logout "
        f"({batches / n:.2f} $batch calls per logout), failed {failed}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[4, 32])
    args = parser.parse_args()
    redis_proc, redis_url = start_redis()
    graph_proc, graph_url = start_graph(0, 1_000_000)
    try:
        async with httpx.AsyncClient(base_url=graph_url) as admin:
            made = await admin.post(
                "/_sim/users:bulk",
                json={"count": args.users, "prefix": "bench", "domain": "example.org"},
            )
            made.raise_for_status()
        print(f"load average (1 min) before: {os.getloadavg()[0]:.1f}")
        for in_flight in args.in_flight:
            await run(graph_url, redis_url, range(args.users), in_flight, graph_proc.pid)
        print(f"load average (1 min) after: {os.getloadavg()[0]:.1f}")
    finally:
        graph_proc.terminate()
        redis_proc.terminate()


if __name__ == "__main__":
    run_loop(main())  # uvloop, as the worker runs
