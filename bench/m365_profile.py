"""Offboard many users through the Microsoft 365 worker's handler and msgraph-sdk adapter
against the Graph simulator (its own process, 100 ms per call, a write throttle), with the
Redis-shared rate limiter; then the same work one user after another, as an admin script
would do it. Starts its own redis-server and simulator on 127.0.0.1; prints figures.

    .venv/bin/python bench/m365_profile.py [--users 5000] [--sequential-users 60]
        [--profile staff-leaves]   # the whole leaver procedure (issue 18), Exchange included
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import redis as redis_sync
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sortie_cli.stack import free_port  # noqa: E402
from sortie_core.events import OffboardRequested, Subject, utcnow  # noqa: E402
from sortie_core.ratelimit import RedisRateLimiter  # noqa: E402
from sortie_core.steps import RetryPolicy  # noqa: E402
from sortie_m365.adapters.credentials import StaticTokenCredential  # noqa: E402
from sortie_m365.adapters.exchange import ExchangeMailboxProtocols  # noqa: E402
from sortie_m365.adapters.graph_http import graph_client  # noqa: E402
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory  # noqa: E402
from sortie_m365.bootstrap import leaver_ops  # noqa: E402
from sortie_m365.handlers import handle_offboard  # noqa: E402

LISTENING = re.compile(r"listening on (http://\S+)")
WRITES_PER_USER = 3  # block_sign_in, reset_password, revoke_sessions (mailbox: not configured)
# Each user: 2 licences, 3 groups, 1 device, a phone method; Exchange through the simulator.
STAFF_LEAVES = (
    "block_sign_in", "reset_password", "revoke_sessions", "disable_mail_protocols",
    "remove_licenses", "remove_group_memberships", "remove_auth_methods", "disable_devices",
    "set_auto_reply", "convert_to_shared_mailbox", "hide_from_address_lists",
)  # fmt: skip
STAFF_OPTIONS: dict[str, dict[str, object]] = {"set_auto_reply": {"message": "Left the school."}}


@dataclass
class Figures:
    users: int
    wall_s: float
    writes: int
    throttled: int
    requests: int
    failed_users: int
    batches: int = 0

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.wall_s


def start_graph(latency_ms: float, throttle: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "sortie_simulators", "graph", "--port", "0",
            "--latency-ms", str(latency_ms), "--throttle-writes-per-s", str(throttle),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the Graph simulator did not start")


def subject(n: int) -> Subject:
    return Subject(user_id=f"bench{n:05d}", upn=f"bench{n:05d}@example.org")


async def run(
    graph_url: str,
    users: range,
    *,
    in_flight: int,
    limiter: RedisRateLimiter | None,
    policy: RetryPolicy,
    batch_linger_s: float | None = None,
    profile: str | None = None,
) -> Figures:
    credential = StaticTokenCredential(SecretStr("bench-token"))
    client = graph_client(graph_url, credential, scope="bench/.default", timeout_s=30)
    mailbox = (
        ExchangeMailboxProtocols(graph_url, "bench", credential, scope="exchange/.default")
        if profile
        else None
    )
    directory = GraphSdkDirectory(
        client,
        limiter=limiter,
        concurrency=max(in_flight, 1) * 2,
        batch_linger_s=batch_linger_s,
        mailbox=mailbox,
    )
    ops = leaver_ops(directory)
    async with httpx.AsyncClient(base_url=graph_url) as admin:
        await admin.post("/_sim/reset-stats")
        slots = asyncio.Semaphore(in_flight)
        failed = 0

        async def one(n: int) -> None:
            nonlocal failed
            async with slots:
                event = OffboardRequested(
                    request_id=uuid.uuid4(),
                    subject=subject(n),
                    reason="bench",
                    deadline=utcnow() + timedelta(hours=1),
                    actions=STAFF_LEAVES if profile else (),
                    options=STAFF_OPTIONS if profile else {},
                    profile=profile,
                )
                result = await handle_offboard(event, directory=directory, policy=policy, ops=ops)
            # Offboarded means proven: each step succeeded and was read back from Graph.
            if not all(s.done for s in result.steps):
                failed += 1

        started = time.monotonic()
        await asyncio.gather(*(one(n) for n in users))
        wall = time.monotonic() - started
        stats = (await admin.get("/_sim/stats")).json()
    await directory.aclose()
    batches = directory.batcher.batches_sent if directory.batcher else 0
    return Figures(
        len(users), wall, stats["writes"], stats["throttled"], stats["requests"], failed, batches
    )


def show(title: str, f: Figures, throttle: float) -> None:
    print(f"{title}")
    print(f"  users offboarded      {f.users - f.failed_users} of {f.users}")
    print(f"  wall time             {f.wall_s:.1f} s")
    print(f"  throughput            {f.users / f.wall_s:.1f} users/s")
    print(f"  writes                {f.writes} ({f.writes_per_s:.1f}/s, "
          f"{100 * f.writes_per_s / throttle:.1f}% of the {throttle:g}/s throttle)")  # fmt: skip
    print(f"  Graph operations      {f.requests} (lookups included; {f.batches} $batch calls)")
    print(f"  429s received         {f.throttled}")
    print(f"  failed users          {f.failed_users}")


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free port of 127.0.0.1 (no persistence)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        with contextlib.suppress(OSError, RedisError):
            if redis_sync.Redis.from_url(url).ping():
                return proc, url
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--throttle", type=float, default=200.0, help="simulator writes/s")
    parser.add_argument("--rate", type=float, default=None, help="limiter writes/s")
    parser.add_argument("--in-flight", type=int, default=100, help="users at once")
    parser.add_argument("--sequential-users", type=int, default=60)
    parser.add_argument("--batch-linger-ms", type=float, default=20.0, help="0: no $batch")
    parser.add_argument("--profile", choices=["staff-leaves"], default=None)
    args = parser.parse_args()
    if not 1 <= args.users <= 20_000 or not 0 <= args.sequential_users <= args.users:
        raise SystemExit("--users within 1..20000, --sequential-users within 0..--users")
    rate = args.rate or args.throttle * 0.98
    redis_proc, redis_url = start_redis()
    proc, graph_url = start_graph(args.latency_ms, args.throttle)
    redis = Redis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(base_url=graph_url) as admin:
            made = await admin.post(
                "/_sim/users:bulk",
                json={"count": args.users, "prefix": "bench", "domain": "example.org"},
            )
            made.raise_for_status()
            if args.profile:
                seeded = await admin.post("/_sim/leaver:seed", json={"prefix": "bench"})
                seeded.raise_for_status()
        policy = RetryPolicy(max_attempts=8, base_s=0.2, max_s=5.0)
        limiter = RedisRateLimiter(redis, "sortie:ratelimit:graph:bench", rate, burst=rate / 10)
        print(f"{args.users} users, {args.latency_ms:g} ms per Graph call, simulator throttle "
              f"{args.throttle:g} writes/s, limiter {rate:g} writes/s shared through Redis, "
              f"{args.in_flight} users in flight, "
              f"$batch linger {args.batch_linger_ms:g} ms, "
              f"profile {args.profile or 'default'}")  # fmt: skip
        concurrent = await run(
            graph_url, range(1, args.users + 1), in_flight=args.in_flight, limiter=limiter,
            policy=policy, batch_linger_s=args.batch_linger_ms / 1000 or None,
            profile=args.profile,
        )  # fmt: skip
        show("concurrent (Sortie)", concurrent, args.throttle)
        if args.sequential_users:
            # Fresh users: the first run already offboarded the others.
            async with httpx.AsyncClient(base_url=graph_url) as admin:
                await admin.post(
                    "/_sim/users:bulk",
                    json={"count": args.sequential_users, "prefix": "bench",
                          "domain": "example.org", "start": args.users + 1},
                )  # fmt: skip
            seq_users = range(args.users + 1, args.users + 1 + args.sequential_users)
            if args.profile:
                async with httpx.AsyncClient(base_url=graph_url) as admin:
                    # Seeds every bench user again: only the fresh ones still hold anything.
                    await admin.post("/_sim/leaver:seed", json={"prefix": "bench"})
            seq = await run(
                graph_url, seq_users, in_flight=1, limiter=None, policy=policy, profile=args.profile
            )
            show(f"one user after another (sample of {seq.users})", seq, args.throttle)
            projected = seq.wall_s / seq.users * args.users
            print(f"  projected for {args.users} users  {projected:.0f} s "
                  f"({projected / concurrent.wall_s:.0f}x the concurrent run)")  # fmt: skip
    finally:
        await redis.aclose()
        proc.terminate()
        proc.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
