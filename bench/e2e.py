"""End to end throughput: `sortie up`'s processes (its own redis-server, the simulators at
zero latency, every service), driven through the HTTP API; completions read from
`request.finished`. Prints sagas/s, CPU ms per saga for every process, Redis commands per
saga (INFO commandstats; scripts' and transactions' inner commands included, so EVALSHA
and EXEC are shown apart as the round trips that carry them), Redis round trips per saga
(INFO stats' read events), request duration percentiles, Redis memory per finished request,
and apart, the driver's own CPU (it shares the machine, so it drives with aiohttp).
Finished requests are counted by final status.

    .venv/bin/python bench/e2e.py [--requests 2000] [--concurrency 64] [--latency 0.1]

With `--latency S` every simulator call takes S seconds; a sample of finished requests is
then read back (GET /v1/requests/{id}) to compare each request's duration with its bound
of issue 12: the slowest phase-1 step + the SSO step + 50 ms. `--rate R` sends R requests
per second (open loop) instead of as fast as they are accepted: latency is only
meaningful below the stack's throughput, where no backlog builds up.

Every subject exists where a real one would (as the issue measured it): an M365 account in
the Graph simulator (a real revocation, read back) and an SSO session in the CAS simulator
whose tickets reach every CAS application (real single logouts). `--unknown` measures
users the simulators do not know instead (Graph answers 404, no CAS session): both phases
still run through every worker, with no write and no application logout.
Run it with another checkout's interpreter to measure that checkout (run it in
both to compare two).

`--cluster` runs it twice, on the stack's own single Redis and then on a local Redis
Cluster of three primaries (`sortie_testkit.redis_cluster`), and prints both figures side by
side (Redis commands and memory summed over the primaries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_cli.stack import Stack
from sortie_simulators.seeding import seed_subjects, subject_name
from sortie_testkit.redis_cluster import RedisClusterGroup

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def cpu_all(stack: Stack) -> dict[str, float]:
    return {p.name: cpu_s(p.popen.pid) for p in stack.procs if p.popen and p.alive()}


def own_cpu_s() -> float:
    """This driver's own CPU time (it shares the machine with what it measures)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def server_stats(nodes: list[str]) -> dict[str, Any]:
    """Summed over `nodes` (the primaries' URLs), from one INFO each: calls per command,
    `reads` (read events on client connections: one per round trip, as a pipeline or a
    script arrives in one read; this driver's own few included) and `memory`."""
    calls: dict[str, int] = {}
    reads = memory = 0
    for url in nodes:
        async with Redis.from_url(url) as node:
            info: dict[str, Any] = await node.info("everything")
        for k, v in info.items():
            if k.startswith("cmdstat_"):
                name = k.removeprefix("cmdstat_")
                calls[name] = calls.get(name, 0) + int(v["calls"])
        reads += int(info["total_reads_processed"])
        memory += int(info["used_memory"])
    return {"calls": calls, "reads": reads, "memory": memory}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(
    stack: Stack,
    requests: int,
    concurrency: int,
    rate: float | None = None,
    nodes: list[str] | None = None,
) -> dict[str, Any]:
    """`nodes`: the primaries of a Cluster (None: the stack's one Redis)."""
    redis: Any = RedisCluster.from_url(nodes[0]) if nodes else Redis.from_url(stack.urls["redis"])
    nodes = nodes or [stack.urls["redis"]]
    finished: dict[str, float] = {}
    final_status: dict[str, str] = {}
    first_status: dict[str, str] = {}  # a request healed by a follow-up finishes twice
    # From the stream's current last entry: with "$" on every call, what was added between
    # two calls would be missed.
    tail: Any = await redis.xrevrange("request.finished", count=1)
    last_id: Any = tail[0][0] if tail else "0-0"
    wanted: set[str] = set()
    errors: dict[int | str, int] = {}

    async def read_finished() -> None:
        nonlocal last_id
        while True:
            try:
                reply: Any = await redis.xread(
                    {"request.finished": last_id}, block=1000, count=1000
                )
            except Exception as exc:  # a hiccup must not end the count silently
                print(f"reading request.finished: {exc!r}; again", file=sys.stderr)
                await asyncio.sleep(0.1)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    rid = fields[b"request_id"].decode()
                    # Possibly before its POST returned: matched against `wanted` later.
                    data = json.loads(fields[b"data"])
                    finished[rid] = data["duration_seconds"]
                    final_status[rid] = data["status"]
                    first_status.setdefault(rid, data["status"])

    headers = {"Authorization": f"Bearer {stack.token}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client_loop(client: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if rate:  # open loop: request i is sent at i / rate seconds, not sooner
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            user = subject_name("bench", i)
            body = {
                "subject": {"user_id": user, "upn": f"{user}@example.org", "cas_username": user},
                "targets": ["m365", "ent"],
            }
            try:
                async with client.post("/v1/logouts", json=body) as resp:
                    answer = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            if resp.status == 202:
                wanted.add(json.loads(answer)["request_id"])
            else:
                errors[resp.status] = errors.get(resp.status, 0) + 1

    reader = asyncio.create_task(read_finished())
    load0 = os.getloadavg()[0]
    stats0, cpu0 = await server_stats(nodes), cpu_all(stack)
    started, own0 = time.monotonic(), own_cpu_s()
    # aiohttp, not httpx: httpcore scans its whole pool on every request, which at 64
    # connections cost this driver ~60 % of a core, taken from the processes it measures.
    async with aiohttp.ClientSession(
        base_url=stack.urls["api"],
        headers=headers,
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        deadline = time.monotonic() + 120
        while len(wanted & finished.keys()) < len(wanted) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        elapsed, own_cpu = time.monotonic() - started, own_cpu_s() - own0
        done_ids = sorted(wanted & finished.keys())
        bounds = await sample_bounds(client, done_ids[:: max(1, len(done_ids) // 200)])
        unfinished = await statuses(client, sorted(wanted - finished.keys())[:20])
    stats1, cpu1 = await server_stats(nodes), cpu_all(stack)
    reader.cancel()
    await redis.aclose()
    durations = [finished[rid] for rid in wanted if rid in finished]
    done = len(durations)
    by_status: dict[str, int] = {}
    healed = 0
    for rid in wanted & finished.keys():
        by_status[final_status[rid]] = by_status.get(final_status[rid], 0) + 1
        healed += first_status[rid] != final_status[rid]
    cmd0, cmd1 = stats0["calls"], stats1["calls"]
    calls = {k: cmd1.get(k, 0) - cmd0.get(k, 0) for k in cmd1}
    return {
        "sent": requests,
        # Throughput and latency depend on what else runs on the machine; CPU per saga
        # barely does.
        "load_average": (load0, os.getloadavg()[0]),
        "accepted": len(wanted),
        "finished": done,
        "finished_by_status": by_status,
        "healed": healed,
        "errors": errors,
        "elapsed_s": elapsed,
        "sagas_per_s": done / elapsed if elapsed else 0.0,
        "cpu_ms_per_saga": {
            name: 1000 * (cpu1.get(name, 0.0) - cpu0.get(name, 0.0)) / max(done, 1) for name in cpu0
        },
        "commands_per_saga": sum(calls.values()) / max(done, 1),
        "round_trips_per_saga": (stats1["reads"] - stats0["reads"]) / max(done, 1),
        "evalsha_exec_per_saga": (calls.get("evalsha", 0) + calls.get("exec", 0)) / max(done, 1),
        "top_commands": sorted(calls.items(), key=lambda kv: -kv[1])[:12],
        "p50_s": pct(durations, 0.50),
        "p95_s": pct(durations, 0.95),
        "p99_s": pct(durations, 0.99),
        "driver_cpu_ms_per_saga": 1000 * own_cpu / max(done, 1),
        "memory_bytes_per_finished": (stats1["memory"] - stats0["memory"]) / max(done, 1),
        "bounds": bounds,
        "unfinished": unfinished,
    }


async def get_view(client: aiohttp.ClientSession, rid: str) -> dict[str, Any]:
    """GET /v1/requests/{rid}, again on a kept-alive connection the server closed while
    the bench waited (uvicorn's keep-alive timeout is 5 s)."""
    for attempt in range(3):
        try:
            async with client.get(f"/v1/requests/{rid}") as resp:
                return dict(json.loads(await resp.read()))
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def request_bound(view: dict[str, Any]) -> float:
    """Issue 12's bound: the slowest phase-1 step, then the SSO step, plus 50 ms."""
    phase1 = [s["duration_seconds"] for svc in view["services"].values() for s in svc["steps"]]
    sso = sum(step["duration_seconds"] for step in (view.get("sso") or {}).get("steps", []))
    return max(phase1, default=0.0) + sso + 0.05


async def sample_bounds(client: aiohttp.ClientSession, ids: list[str]) -> list[tuple[float, float]]:
    """(duration, bound) of each sampled request."""
    out = []
    for rid in ids:
        view = await get_view(client, rid)
        out.append((float(view["duration_seconds"] or 0.0), request_bound(view)))
    return out


async def statuses(client: aiohttp.ClientSession, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rid in ids:
        status = (await get_view(client, rid)).get("status", "?")
        counts[status] = counts.get(status, 0) + 1
    return counts


def report(result: dict[str, Any]) -> None:
    print(f"sent {result['sent']}, accepted {result['accepted']}, finished {result['finished']}")
    print(
        f"finished by status: {result['finished_by_status'] or 'none'}"
        f" ({result['healed']} of them first ended otherwise, then healed by a follow-up)"
    )
    print(f"errors by HTTP status: {result['errors'] or 'none'}")
    fives = sum(n for k, n in result["errors"].items() if isinstance(k, int) and k >= 500)
    print(f"5xx: {fives}")
    if result["unfinished"]:
        print(f"unfinished (status of up to 20): {result['unfinished']}")
    print(f"sagas/s: {result['sagas_per_s']:.1f} over {result['elapsed_s']:.1f} s")
    print("load average (1 min) before/after: {:.1f} / {:.1f}".format(*result["load_average"]))
    print("CPU ms per saga:")
    total = 0.0
    for name, ms in sorted(result["cpu_ms_per_saga"].items(), key=lambda kv: -kv[1]):
        total += ms
        print(f"  {name:28s} {ms:7.2f}")
    print(f"  {'total':28s} {total:7.2f}")
    print(f"  {'(this driver, not counted)':28s} {result['driver_cpu_ms_per_saga']:7.2f}")
    print(
        f"Redis commands per saga: {result['commands_per_saga']:.1f}"
        f" (EVALSHA + EXEC: {result['evalsha_exec_per_saga']:.1f})"
    )
    print("  " + ", ".join(f"{k} {v}" for k, v in result["top_commands"]))
    print(f"Redis round trips per saga (read events): {result['round_trips_per_saga']:.1f}")
    print(
        f"request duration p50/p95/p99: {1000 * result['p50_s']:.0f} /"
        f" {1000 * result['p95_s']:.0f} / {1000 * result['p99_s']:.0f} ms"
    )
    print(f"Redis memory per finished request: {result['memory_bytes_per_finished']:.0f} bytes")
    bounds = result["bounds"]
    if bounds:
        within = sum(1 for d, b in bounds if d <= b)
        print(
            f"bound (slowest phase-1 step + SSO step + 50 ms) over {len(bounds)} sampled:"
            f" p50 {1000 * pct([b for _d, b in bounds], 0.5):.0f} ms,"
            f" p99 {1000 * pct([b for _d, b in bounds], 0.99):.0f} ms;"
            f" sampled p99 duration {1000 * pct([d for d, _b in bounds], 0.99):.0f} ms;"
            f" {within}/{len(bounds)} within their bound"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--graph-writes-per-s", type=float, default=100_000.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests per second (default: as fast as accepted)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every simulator call"
    )
    parser.add_argument(
        "--unknown", action="store_true", help="subjects unknown to Graph and the CAS"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also on a local 3-primary Redis Cluster, figures side by side",
    )
    args = parser.parse_args()
    single = run_once(args, cluster=None)
    report(single)
    if not args.cluster:
        return
    cluster = RedisClusterGroup(primaries=3).start()
    try:
        clustered = run_once(args, cluster=cluster)
    finally:
        cluster.cleanup()
    print("\n== Redis Cluster (3 primaries)")
    report(clustered)
    side_by_side(single, clustered)


def run_once(args: argparse.Namespace, cluster: RedisClusterGroup | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="sortie-bench-"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for service in ("ORCHESTRATOR", "M365", "ENT", "AGENT"):
        env[f"SORTIE_{service}_LOG_LEVEL"] = "WARNING"
    # The simulator does not throttle: measure Sortie, not the shipped tenant budget.
    env["SORTIE_M365_TENANT_WRITES_PER_S"] = str(args.graph_writes_per_s)
    nodes = None
    if cluster is not None:
        env |= cluster.env()
        nodes = [f"redis://127.0.0.1:{n.port}/0" for n in cluster.primaries()]
    stack = Stack(workdir=workdir, api_port=0, base_env=env, sim_latency_ms=1000 * args.latency)
    stack.plan()
    try:
        stack.start(timeout=90)
        if not args.unknown:
            asyncio.run(seed_subjects(stack.urls, "bench", args.requests))
        return uvloop.run(drive(stack, args.requests, args.concurrency, args.rate, nodes))
    finally:
        stack.stop()


def side_by_side(single: dict[str, Any], cluster: dict[str, Any]) -> None:
    """The main figures of both runs, one line each."""
    rows = [
        ("sagas/s", "sagas_per_s", 1.0, ".1f"),
        ("Redis commands per saga", "commands_per_saga", 1.0, ".1f"),
        ("Redis round trips per saga", "round_trips_per_saga", 1.0, ".1f"),
        ("p50 ms", "p50_s", 1000.0, ".0f"),
        ("p95 ms", "p95_s", 1000.0, ".0f"),
        ("p99 ms", "p99_s", 1000.0, ".0f"),
        ("Redis bytes per finished request", "memory_bytes_per_finished", 1.0, ".0f"),
    ]
    print(f"\n{'':34s} {'single Redis':>14s} {'Cluster (3)':>14s}")
    for label, key, scale, fmt in rows:
        a, b = scale * single[key], scale * cluster[key]
        print(f"{label:34s} {a:>14{fmt}} {b:>14{fmt}}")
    cpu = [sum(r["cpu_ms_per_saga"].values()) for r in (single, cluster)]
    print(f"{'CPU ms per saga (all processes)':34s} {cpu[0]:>14.2f} {cpu[1]:>14.2f}")
    print(f"{'finished / accepted':34s} {_done(single):>14s} {_done(cluster):>14s}")


def _done(result: dict[str, Any]) -> str:
    return f"{result['finished']}/{result['accepted']}"


if __name__ == "__main__":
    main()
