"""Offboard many users through the real path: `sortie up`'s processes (its own
redis-server, the simulators, every service), `POST /v1/offboardings` on the HTTP intake →
streams → m365-worker (msgraph-sdk, the Redis-shared write quota) → the Graph simulator at
100 ms per call, throttling writes per application (client id of the bearer token) and
per tenant like Graph. Prints the Graph writes/s achieved as a share of the throttle, the
429s, and how long the offboardings took; then the same with two app registrations, each
throttled apart.

    .venv/bin/python bench/m365_offboard.py [--users 3000] [--throttle 200] [--apps 1 2]
    .venv/bin/python bench/m365_offboard.py --profile staff-leaves [--users 100]
        [--throttle 20] [--phase-gap-s 5]
        # a whole leaver profile, every phase, through the same real path
        # (bench/m365_profile_path.py); add --in-process for the worker's handler alone
        # against the simulator (bench/m365_profile.py)

The worker is told the simulator's limits (`SORTIE_M365_APP_WRITES_LIMIT` per second and
app, `…_TENANT_WRITES_LIMIT` per second for the tenant) and sizes its handlers in flight
from them and the latency (`SORTIE_M365_GRAPH_LATENCY_S`), as in production from Graph's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import runpy
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_cli.stack import Proc, Stack
from sortie_core import streams

GRAPH_WRITES = ["block_sign_in", "reset_password", "revoke_sessions"]


@dataclass
class Figures:
    apps: int
    throttle: float
    users: int
    finished: int
    completed: int
    wall_s: float
    writes: int
    throttled: int
    steady_writes_per_s: float
    errors: dict[int, int]

    writing_s: float = 0.0

    @property
    def writes_per_s(self) -> float:
        """Over the time Graph was written to: first write to last."""
        return self.writes / self.writing_s if self.writing_s else 0.0


def stack_env(args: argparse.Namespace, apps: int) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for service in ("ORCHESTRATOR", "M365", "ENT", "AGENT"):
        env[f"SORTIE_{service}_LOG_LEVEL"] = "WARNING"
    registrations = [{"client_id": f"bench-app-{n}", "graph_token": f"bench-token-{n}"}
                     for n in range(apps)]  # fmt: skip
    env.update(
        {
            "SORTIE_M365_APP_REGISTRATIONS": json.dumps(registrations),
            "SORTIE_M365_APP_WRITES_LIMIT": str(args.throttle),
            "SORTIE_M365_APP_WRITES_WINDOW_S": "1",
            "SORTIE_M365_TENANT_WRITES_LIMIT": str(args.throttle * apps),
            "SORTIE_M365_TENANT_WRITES_WINDOW_S": "1",
            "SORTIE_ORCHESTRATOR_PHASE1_TIMEOUT_S": "900",
            "SORTIE_M365_GRAPH_LATENCY_S": str(args.latency_estimate or args.latency_ms / 1000),
        }
    )
    return env


async def drive(stack: Stack, args: argparse.Namespace, apps: int) -> Figures:
    graph = stack.urls["sim_graph"]
    async with httpx.AsyncClient(base_url=graph, timeout=30) as admin:
        made = await admin.post(
            "/_sim/users:bulk",
            json={"count": args.users, "prefix": "bench", "domain": "example.org"},
        )
        made.raise_for_status()
        config = {
            "latency_ms": args.latency_ms,
            "throttle_writes_per_s": args.throttle,
            "throttle_tenant_writes_per_s": args.throttle * apps,
        }
        (await admin.post("/_sim/config", json=config)).raise_for_status()
        await admin.post("/_sim/reset-stats")
        redis = Redis.from_url(stack.urls["redis"])
        finished: dict[str, str] = {}
        wanted: set[str] = set()
        errors: dict[int, int] = {}
        samples: list[tuple[float, int]] = []
        queued: list[float] = []
        cpu0 = cpu_all(stack)

        async def read_finished() -> None:
            last: Any = "$"
            while True:
                try:
                    reply: Any = await redis.xread(
                        {"request.finished": last}, block=1000, count=500
                    )
                except (OSError, RedisError):
                    await asyncio.sleep(0.1)
                    continue
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        data = json.loads(fields[b"data"])
                        finished[fields[b"request_id"].decode()] = data.get("status", "")

        async def sample() -> None:
            while True:
                stats = (await admin.get("/_sim/stats")).json()
                samples.append((time.monotonic(), stats["writes"]))
                with contextlib.suppress(httpx.HTTPError):  # the worker held back
                    metrics = (await admin.get(stack.urls["m365_metrics"])).text
                    queued.append(sum(_gauge(metrics, "sortie_m365_writes_queued").values()))
                await asyncio.sleep(0.2)

        worker = next(p for p in stack.procs if p.name == "m365-worker")
        if args.held:
            stop_worker(worker)
        reader = asyncio.create_task(read_finished())
        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(
            base_url=stack.urls["api"], headers=headers, timeout=30
        ) as api:
            queue = list(range(1, args.users + 1))

            async def client() -> None:
                while queue:
                    n = queue.pop()
                    body = {
                        "subject": {"user_id": f"bench{n:05d}", "upn": f"bench{n:05d}@example.org"},
                        "reason": "bench",
                        "actions": GRAPH_WRITES,
                    }
                    resp = await api.post("/v1/offboardings", json=body)
                    if resp.status_code == 202:
                        wanted.add(resp.json()["request_id"])
                    else:
                        errors[resp.status_code] = errors.get(resp.status_code, 0) + 1

            await asyncio.gather(*(client() for _ in range(32)))
        print(f"  intake: {len(wanted)} accepted in {time.monotonic() - started:.1f} s")
        if args.held:
            # Every command in the stream first: the worker, not this machine's intake and
            # orchestrator, sets the pace from here.
            while await redis.xlen(streams.OFFBOARD_REQUESTED) < len(wanted):
                await asyncio.sleep(0.1)
            worker.start()
            stack._wait_ready(worker, time.monotonic() + 60)
            print(f"  m365-worker started with {len(wanted)} offboardings waiting")
        deadline = time.monotonic() + args.wait_s
        while len(wanted - finished.keys()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if wanted - finished.keys():
            rid = next(iter(wanted - finished.keys()))
            view = (await api_get(stack, f"/v1/requests/{rid}")).json()
            states = {k: v.get("state") for k, v in view.get("services", {}).items()}
            print(f"  unfinished, e.g. {rid}: {view.get('status')}, {states}")
        wall = time.monotonic() - started
        sampler.cancel()
        reader.cancel()
        stats = (await admin.get("/_sim/stats")).json()
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_all(stack).items()}
        await redis.aclose()
    busy = ", ".join(
        f"{k} {100 * v / wall:.0f}%" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])[:5]
    )
    print(
        f"  CPU (of one core): {busy}; writes queued in the worker: "
        f"mean {sum(queued) / max(1, len(queued)):.0f}, max {max(queued, default=0):.0f}"
    )
    done = [finished[r] for r in wanted if r in finished]
    return Figures(
        apps,
        args.throttle * apps,
        args.users,
        len(done),
        sum(1 for s in done if s == "completed"),
        wall,
        stats["writes"],
        stats["throttled"],
        steady_rate(samples),
        errors,
        writing_time(samples),
    )


async def api_get(stack: Stack, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.urls["api"], headers=headers) as api:
        return await api.get(path)


def stop_worker(worker: Proc) -> None:
    assert worker.popen is not None
    worker.popen.send_signal(signal.SIGTERM)
    worker.popen.wait(30)


def _gauge(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def cpu_all(stack: Stack) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for proc in stack.procs:
        if proc.popen and proc.alive():
            fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[proc.name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def writing_time(samples: list[tuple[float, int]]) -> float:
    total = samples[-1][1] if samples else 0
    first = next((t for t, w in samples if w > 0), None)
    last = next((t for t, w in samples if w >= total), None)
    return last - first if first is not None and last is not None and last > first else 0.0


def steady_rate(samples: list[tuple[float, int]]) -> float:
    """Writes/s between 10 % and 90 % of the writes (the ramp-up and tail left out)."""
    if len(samples) < 3 or samples[-1][1] == 0:
        return 0.0
    total = samples[-1][1]
    inner = [s for s in samples if 0.1 * total <= s[1] <= 0.9 * total]
    if len(inner) < 2:
        return 0.0
    (t0, w0), (t1, w1) = inner[0], inner[-1]
    return (w1 - w0) / (t1 - t0) if t1 > t0 else 0.0


async def logouts(stack: Stack, args: argparse.Namespace) -> None:
    """Logouts of Graph users one after another, each user twice (the second time the
    identity cache answers): the M365 step's duration (its lookup included) against the
    request's, the SSO step's and what is left (what no step accounts for)."""
    graph = stack.urls["sim_graph"]
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with (
        httpx.AsyncClient(base_url=graph, timeout=30) as admin,
        httpx.AsyncClient(base_url=stack.urls["api"], headers=headers, timeout=30) as api,
    ):
        await admin.post("/_sim/users:bulk", json={"count": args.logouts, "prefix": "lo",
                                                   "domain": "example.org"})  # fmt: skip
        await admin.post("/_sim/config", json={"latency_ms": args.latency_ms})
        rows: dict[str, list[tuple[float, float, float]]] = {"first": [], "cached": []}
        for got in rows.values():
            for n in range(1, args.logouts + 1):
                body = {"subject": {"user_id": f"lo{n}", "upn": f"lo{n:05d}@example.org"},
                        "targets": ["m365"]}  # fmt: skip
                rid = (await api.post("/v1/logouts", json=body)).json()["request_id"]
                view: dict[str, Any] = {}
                for _ in range(300):
                    view = (await api.get(f"/v1/requests/{rid}")).json()
                    if view.get("finished_at"):
                        break
                    await asyncio.sleep(0.02)
                m365 = view["services"]["m365"]["steps"][0]["duration_seconds"]
                sso = max((s["duration_seconds"] for s in (view["sso"] or {}).get("steps", [])),
                          default=0.0)  # fmt: skip
                got.append((view["duration_seconds"], m365, sso))
    print(f"logouts (m365 only), {args.latency_ms:g} ms per Graph call, one at a time:")
    for label, got in rows.items():
        total = [r[0] for r in got]
        m365 = [r[1] for r in got]
        rest = [r[0] - r[1] - r[2] for r in got]
        print(f"  {label:7s} request p50/p99 {pct(total, 0.5):.0f}/{pct(total, 0.99):.0f} ms; "
              f"m365 step p50/p99 {pct(m365, 0.5):.0f}/{pct(m365, 0.99):.0f} ms; "
              f"request - m365 step - SSO step p50/p99 "
              f"{pct(rest, 0.5):.0f}/{pct(rest, 0.99):.0f} ms")  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def show(f: Figures) -> None:
    share = 100 * f.writes_per_s / f.throttle
    steady = 100 * f.steady_writes_per_s / f.throttle
    print(f"{f.apps} app registration(s), throttle {f.throttle:g} writes/s "
          f"({f.throttle / f.apps:g} per app)")  # fmt: skip
    print(f"  offboardings finished  {f.finished} of {f.users} ({f.completed} completed)"
          f"; intake errors {f.errors or 'none'}")  # fmt: skip
    print(f"  wall time              {f.wall_s:.1f} s (first POST to last request.finished); "
          f"writing {f.writing_s:.1f} s")  # fmt: skip
    print(f"  Graph writes           {f.writes}: {f.writes_per_s:.1f}/s = {share:.1f}% of the "
          f"throttle (steady state {f.steady_writes_per_s:.1f}/s = {steady:.1f}%)")  # fmt: skip
    print(f"  429s received          {f.throttled}")


def main() -> None:
    if "--profile" in sys.argv[1:] and "--in-process" in sys.argv[1:]:
        # The handler and msgraph-sdk alone against the simulator's throttle.
        sys.argv.remove("--in-process")
        runpy.run_path(str(Path(__file__).with_name("m365_profile.py")), run_name="__main__")
        return
    if "--profile" in sys.argv[1:]:
        # A whole leaver profile through the real path (HTTP, streams, workers, simulator).
        from m365_profile_path import main as profile_main

        profile_main(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--throttle", type=float, default=200.0, help="writes/s per app")
    parser.add_argument("--apps", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--latency-estimate",
        type=float,
        default=None,
        help="the worker's latency estimate for its sizing, s (default: the simulator's)",
    )
    parser.add_argument("--wait-s", type=float, default=600, help="for the last to finish")
    parser.add_argument("--logouts", type=int, default=0, help="then N logouts, one by one")
    parser.add_argument(
        "--now",
        dest="held",
        action="store_false",
        help="the worker runs from the start (else it starts once every command is queued)",
    )
    args = parser.parse_args()
    if not 0 <= args.users <= 20_000 or not all(1 <= a <= 8 for a in args.apps):
        raise SystemExit("--users within 1..20000, --apps within 1..8")
    print(f"{args.users} users per run, {args.latency_ms:g} ms per Graph call, "
          f"writes: {', '.join(GRAPH_WRITES)}")  # fmt: skip
    for apps in args.apps:
        workdir = Path(tempfile.mkdtemp(prefix="sortie-m365-bench-"))
        stack = Stack(workdir=workdir, api_port=0, base_env=stack_env(args, apps))
        stack.plan()
        try:
            stack.start(timeout=90)
            if args.users:
                show(asyncio.run(drive(stack, args, apps)))
            if args.logouts:
                asyncio.run(logouts(stack, args))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
