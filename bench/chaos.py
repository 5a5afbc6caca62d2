"""Chaos suite: faults injected into the real processes of `sortie up` while logouts are in
flight. Prints one row per scenario: sent, accepted, lost, stuck, statuses, p99.

    .venv/bin/python bench/chaos.py                     # every scenario, 250 logouts each
    .venv/bin/python bench/chaos.py --only app-down --requests 50 --down 20

`lost`: accepted (HTTP 202) but unknown afterwards. `stuck`: not finished when the wait
ends. Every subject has an M365 account and an SSO session with tickets for every CAS
application in the simulators, so each revocation is real work. A request healed by a
follow-up counts with its final status; its duration is accepted → healed. Each scenario
runs on a fresh stack (own redis-server, simulators; `sentinel-*` on a primary, a replica
and three sentinels; `cluster-kill` on a local Redis Cluster of three primaries, each with
a replica)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_cli.stack import Proc, Stack
from sortie_simulators.seeding import seed_subjects, subject_name
from sortie_testkit.redis_cluster import RedisClusterGroup
from sortie_testkit.redis_sentinel import SentinelGroup

FAST = {
    # Short deadlines so that a scenario fits in a minute; the follow-up ladder is the
    # production one scaled down.
    "SORTIE_ORCHESTRATOR_PHASE1_TIMEOUT_S": "5",
    "SORTIE_ORCHESTRATOR_SSO_TIMEOUT_S": "10",
    "SORTIE_ORCHESTRATOR_FOLLOWUP_BASE_S": "1",
    "SORTIE_ORCHESTRATOR_FOLLOWUP_MAX_S": "5",
}
FINAL = {"completed", "partial", "failed", "cancelled"}


@dataclass
class Run:
    stack: Stack
    down_s: float
    notes: list[str] = field(default_factory=list)
    # Checks run once the requests settled, with the number accepted.
    after: list[Callable[[Run, int], Awaitable[None]]] = field(default_factory=list)
    # The primary, replica and sentinels of a `sentinel-*` scenario.
    group: SentinelGroup | None = None
    # The 3 primaries and their replicas of `cluster-kill`.
    cluster: RedisClusterGroup | None = None

    def proc(self, name: str) -> Proc:
        return next(p for p in self.stack.procs if p.name == name)

    def kill9(self, name: str) -> None:
        proc = self.proc(name)
        assert proc.popen is not None
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def restart(self, name: str) -> None:
        self.proc(name).start()

    def sim(self, name: str) -> str:
        return self.stack.urls[f"sim_{name}"]


Fault = Callable[[Run], Awaitable[None]]


async def _kill_and_restart(run: Run, name: str, pause: float = 1.0) -> None:
    run.kill9(name)
    await asyncio.sleep(pause)
    run.restart(name)


async def _redis_restart(run: Run) -> None:
    run.kill9("redis")
    await asyncio.sleep(1.0)
    run.restart("redis")


async def _redis_empty(run: Run) -> None:
    """Data lost (or a failover to an empty replica): the services must recover."""
    Redis.from_url(run.stack.urls["redis"]).flushall()


async def _app_down(run: Run) -> None:
    apps = run.sim("entapps")
    async with httpx.AsyncClient() as c:
        # One application of each kind: by identity (mer) and by CAS single logout (esper,
        # whose tickets the CAS forgets once the SSO session is destroyed).
        await c.post(f"{apps}/_sim/config", json={"fail_apps": ["mer", "esper"]})
        await asyncio.sleep(run.down_s)
        await c.post(f"{apps}/_sim/config", json={"fail_apps": []})


async def _cas_down(run: Run) -> None:
    cas = run.sim("cas")
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{cas}/_sim/config", json={"down": True})
        if resp.status_code >= 400:
            run.notes.append(f"cas simulator has no down switch ({resp.status_code})")
            return
        await asyncio.sleep(run.down_s)
        await c.post(f"{cas}/_sim/config", json={"down": False})


async def _graph_storm(run: Run) -> None:
    graph = run.sim("graph")
    async with httpx.AsyncClient() as c:
        await c.post(f"{graph}/_sim/config", json={"throttle_writes_per_s": 0.01})
        await asyncio.sleep(min(run.down_s, 30.0))
        await c.post(f"{graph}/_sim/config", json={"throttle_writes_per_s": 0})


async def _backlog(run: Run) -> None:
    """A live m365-worker with a backlog older than its claim idle time (every Graph call
    takes 3 s): each command must still be done once. Checked with Graph's write count."""
    graph = run.sim("graph")
    async with httpx.AsyncClient() as c:
        await c.post(f"{graph}/_sim/reset-stats")
        await c.post(f"{graph}/_sim/config", json={"latency_ms": 3000})
        await asyncio.sleep(min(run.down_s, 30.0))
        await c.post(f"{graph}/_sim/config", json={"latency_ms": 0})
    run.after.append(_graph_writes)


async def _graph_writes(run: Run, accepted: int) -> None:
    async with httpx.AsyncClient() as c:
        stats = (await c.get(f"{run.sim('graph')}/_sim/stats")).json()
    run.notes.append(f"graph writes {stats['writes']} for {accepted} logouts")


async def _poison(run: Run) -> None:
    r = Redis.from_url(run.stack.urls["redis"])
    for stream in (
        "logout.requested",
        "revocation.completed",
        "sso.logout.requested",
        "sso.logout.completed",
    ):
        r.xadd(stream, {"type": "logout.requested", "data": b"{not json"})
        r.xadd(stream, {"type": "x", "data": b"\xff\xfe invalid utf-8"})


async def _duplicates(run: Run) -> None:
    r = Redis.from_url(run.stack.urls["redis"])
    for stream in ("logout.requested", "revocation.completed"):
        for _id, fields in r.xrange(stream, count=50):
            r.xadd(stream, fields)


async def _sentinel_failover(run: Run) -> None:
    """kill -9 of the Redis primary under load, its replica lagging; once the sentinels
    promoted the replica, the dead node is started again (empty) and becomes the new
    replica."""
    assert run.group is not None
    await asyncio.sleep(0.3)  # requests still being accepted by the first primary
    # The replica lags (stalled and cut off 0.7 s, below the sentinels' 1 s down-after)
    # when the primary dies: on one machine it is otherwise microseconds behind.
    standby = run.group.stall_standby()
    await asyncio.sleep(0.7)
    old = run.group.kill9_primary()
    standby.send_signal(signal.SIGCONT)
    started = time.monotonic()
    new = await asyncio.to_thread(run.group.wait_failover, old)
    run.notes.append(f"new master after {time.monotonic() - started:.1f} s")
    run.group.restart(old)
    try:
        await asyncio.to_thread(
            # The sentinels look at a returning node every 10 s or so before they convert it.
            run.group.wait,
            lambda: run.group is not None and run.group.replicas_of(new) >= 1,
            "resync",
            60,
        )
    except RuntimeError:
        run.notes.append("the old primary was not a replica again within 60 s")


async def _cluster_kill(run: Run) -> None:
    """kill -9 of one Redis Cluster primary (of three, each with a replica) under load;
    once its replica took its slots over, the dead node is started again and becomes
    that one's replica (as a supervisor's restart would)."""
    assert run.cluster is not None
    await asyncio.sleep(0.5)  # requests in flight on every primary
    cluster = run.cluster
    victim = next(n for n in cluster.primaries() if n is not cluster.nodes[0])
    primaries = len(cluster.primaries())
    cluster.kill9(victim)
    started = time.monotonic()
    await asyncio.to_thread(cluster.wait_promoted, primaries)
    run.notes.append(f"replica promoted after {time.monotonic() - started:.1f} s")
    try:
        await asyncio.to_thread(cluster.restart_as_replica, victim, 60)
    except RuntimeError:
        run.notes.append("the killed primary was not a replica again within 60 s")


# Scenarios that need more than the stack: their Redis and the services' settings.
SENTINEL_ENV = {
    # Entries whose acknowledgement died with the primary are claimed again soon.
    **{f"SORTIE_{p}_CLAIM_IDLE_MS": "2000" for p in ("ORCHESTRATOR", "M365", "ENT", "AGENT")},
    "SORTIE_ORCHESTRATOR_DURABLE_TIMEOUT_MS": "500",
}
DURABLE = {
    "sentinel-failover": {**SENTINEL_ENV, "SORTIE_ORCHESTRATOR_DURABLE_REPLICAS": "1"},
    "sentinel-failover-nowait": {**SENTINEL_ENV, "SORTIE_ORCHESTRATOR_DURABLE_REPLICAS": "0"},
}
CLUSTER = {"cluster-kill": {**SENTINEL_ENV, "SORTIE_ORCHESTRATOR_DURABLE_REPLICAS": "1"}}


async def _nothing(run: Run) -> None:
    return None


SCENARIOS: dict[str, Fault] = {
    "baseline": _nothing,
    "kill-orchestrator": lambda r: _kill_and_restart(r, "orchestrator"),
    "kill-m365-worker": lambda r: _kill_and_restart(r, "m365-worker"),
    "kill-ent-worker": lambda r: _kill_and_restart(r, "ent-worker"),
    "kill-agent": lambda r: _kill_and_restart(r, "agent-pc-101"),
    "redis-kill9-aof": _redis_restart,
    "redis-empty": _redis_empty,
    "app-down": _app_down,
    "cas-down": _cas_down,
    "graph-429-storm": _graph_storm,
    "backlog-m365": _backlog,
    "poison": _poison,
    "duplicates": _duplicates,
    # 202 only once WAIT saw the replica hold the request, and without (the loss measured).
    "sentinel-failover": _sentinel_failover,
    "sentinel-failover-nowait": _sentinel_failover,
    # One of three Cluster primaries killed; its replica takes over (WAIT 1 before a 202).
    "cluster-kill": _cluster_kill,
}


async def _submit(client: httpx.AsyncClient, i: int, tag: str) -> str | None:
    user = subject_name(tag, i)
    body = {
        "subject": {"user_id": user, "upn": f"{user}@example.org", "cas_username": user},
        "reason": "chaos",
    }
    # Retries carry the same Idempotency-Key, as an ENT client's do: a request the intake
    # stored but refused (503, not durable yet) is then answered, not submitted again.
    headers = {"Idempotency-Key": f"chaos-{tag}-{i}"}
    for _ in range(50):
        try:
            resp = await client.post("/v1/logouts", json=body, headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            continue
        if resp.status_code == 202:
            return str(resp.json()["request_id"])
        if resp.status_code in (429, 503):
            await asyncio.sleep(float(resp.headers.get("retry-after", "0.5")))
            continue
        GIVEN_UP[f"http {resp.status_code}"] += 1
        return None
    GIVEN_UP["50 attempts"] += 1
    return None


# Submissions given up, by why (the row's `notes`).
GIVEN_UP: Counter[str] = Counter()


def _duration(view: dict) -> float | None:
    end = view.get("healed_at") or view.get("finished_at")
    if not end:
        return None
    start = datetime.fromisoformat(view["created_at"])
    return (datetime.fromisoformat(end) - start).total_seconds()


def _unfinished(view: dict) -> str:
    """One line per step that keeps a request from `completed`, for diagnosis."""
    lines = [f"  {view.get('request_id')} {view.get('status')} followups={view.get('followups')}"]
    services = {**view.get("services", {}), "sso": view.get("sso") or {}}
    for name, svc in services.items():
        for s in svc.get("steps", []):
            if s.get("outcome") not in ("succeeded", "not_found", "skipped") or s.get(
                "verification"
            ) in ("unverified", "contradicted"):
                code = (s.get("error") or {}).get("code")
                lines.append(
                    f"    {name} {s['action']} {s['outcome']} {code} {s.get('verification')}"
                )
    timeline = view.get("timeline", [])  # a lost request has none
    lines += [f"    @ {e['at'][11:23]} {e['event']} {e.get('detail') or ''}" for e in timeline]
    return "\n".join(lines)


async def run_scenario(
    name: str, requests: int, down_s: float, wait_s: float, show: int = 0
) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"sortie-chaos-{name}-"))
    group = SentinelGroup().start() if name in DURABLE else None
    extra = {**group.env(), **DURABLE[name]} if group else {}
    cluster = RedisClusterGroup(primaries=3, replicas=1).start() if name in CLUSTER else None
    if cluster is not None:
        extra = {**cluster.env(), **CLUSTER[name]}
    stack = Stack(workdir=workdir, api_port=0, base_env={**os.environ, **FAST, **extra})
    stack.plan()
    stack.start(timeout=120)
    run = Run(stack, down_s, group=group, cluster=cluster)
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        async with httpx.AsyncClient(
            base_url=stack.urls["api"], headers=headers, timeout=10
        ) as client:
            # Every subject exists where a real one would: each revocation is real work.
            await seed_subjects(run.stack.urls, name, requests)
            fault = asyncio.create_task(SCENARIOS[name](run))
            ids = await asyncio.gather(*(_submit(client, i, name) for i in range(requests)))
            await fault
            accepted = [i for i in ids if i]
            views: dict[str, dict] = {}
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                for rid in accepted:
                    if views.get(rid, {}).get("status") == "completed":
                        continue
                    try:
                        with_retry = await client.get(f"/v1/requests/{rid}")
                    except httpx.TransportError:
                        # A kept-alive connection the server closed while the fault
                        # ran (uvicorn's keep-alive timeout is 5 s): read it next round.
                        continue
                    if with_retry.status_code == 200:
                        views[rid] = with_retry.json()
                    elif with_retry.status_code == 404:
                        views[rid] = {"status": "lost"}
                settled = all(
                    v.get("status") in FINAL and not v.get("followups") for v in views.values()
                )
                if len(views) == len(accepted) and settled:
                    break
                await asyncio.sleep(1.0)
            for check in run.after:
                await check(run, len(accepted))
    finally:
        stack.stop()
        if group is not None:
            group.cleanup()
        if cluster is not None:
            cluster.cleanup()
    if GIVEN_UP:
        run.notes.append(f"not accepted: {dict(GIVEN_UP)}")
        GIVEN_UP.clear()
    statuses = Counter(v.get("status", "?") for v in views.values())
    if show:
        for view in [v for v in views.values() if v.get("status") != "completed"][:show]:
            print(_unfinished(view), flush=True)
    durations = sorted(d for v in views.values() if (d := _duration(v)) is not None)
    p99 = durations[max(0, int(len(durations) * 0.99) - 1)] if durations else None
    return {
        "scenario": name,
        "sent": requests,
        "accepted": len(accepted),
        "lost": statuses.pop("lost", 0) + (len(accepted) - len(views)),
        "stuck": sum(n for s, n in statuses.items() if s not in FINAL),
        "statuses": dict(statuses),
        "p50": statistics.median(durations) if durations else None,
        "p99": p99,
        "notes": "; ".join(run.notes),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--down", type=float, default=60.0, help="seconds a target is down")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the end")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--show", type=int, default=0, help="print the steps of up to N unfinished requests"
    )
    args = parser.parse_args()
    rows = []
    for name in args.only or list(SCENARIOS):
        row = asyncio.run(run_scenario(name, args.requests, args.down, args.wait, args.show))
        rows.append(row)
        print(
            f"{row['scenario']:<18} sent {row['sent']:>4}  accepted {row['accepted']:>4}  "
            f"lost {row['lost']:>3}  stuck {row['stuck']:>3}  p50 {_fmt(row['p50'])}  "
            f"p99 {_fmt(row['p99'])}  {row['statuses']}  {row['notes']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
