"""Workstation fan-out at scale: one orchestrator process, N simulated agents (one process
hosting them all, each a real `Agent` with in-memory sessions), a real redis-server, all
on 127.0.0.1. Prints, for each N: how long the orchestrator took to index the agents'
presence, the logout fan-out (HTTP accept, which finds the hosts and publishes the
commands) and the time until the 3 hosts holding a session of the user reported, a
classroom's "end every session", and Redis memory.

    .venv/bin/python bench/workstations_fanout.py [--agents 1000 5000] [--logouts 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sortie_testkit.fleet import Fleet  # noqa: E402
from sortie_testkit.redis_server import RedisServer, free_port  # noqa: E402
from sortie_testkit.waiting import TimedOut, wait_until_async  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123456"
ROOM = 30  # hosts in a classroom


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return (
        f"median {1000 * statistics.median(values):7.1f} ms"
        f"   p95 {1000 * pct(values, 0.95):7.1f} ms   max {1000 * max(values):7.1f} ms"
    )


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def wait_until(check: Any, timeout_s: float, step_s: float = 0.02) -> float:
    """Seconds until `check()` held (sortie_testkit's wait, timed)."""
    started = time.monotonic()
    try:
        await wait_until_async(check, timeout_s, step_s)
    except TimedOut as exc:
        raise SystemExit(str(exc)) from None
    return time.monotonic() - started


def start_orchestrator(redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SORTIE_REDIS_URL": redis_url,
        "SORTIE_ORCHESTRATOR_HTTP_PORT": str(port),
        "SORTIE_DEV_TOKEN": TOKEN,
        "SORTIE_LOG_LEVEL": "WARNING",
        "SORTIE_ORCHESTRATOR_POLLING_INTERVAL_MS": "20",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sortie_orchestrator"], env=env, stdout=out, stderr=out
        )


async def run(agents: int, logouts: int, workdir: Path) -> None:
    rnd = random.Random(agents)
    server = RedisServer().start()
    port = free_port()
    orch = start_orchestrator(server.url, port, workdir / f"orchestrator-{agents}.log")
    redis = Redis.from_url(server.url)
    api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    fleet = Fleet(server.url)
    try:

        async def ready() -> bool:
            try:
                return (await api.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, 60, 0.1)
        mem0 = await used_memory(redis)
        hosts = [f"pc-{n:05d}" for n in range(agents)]
        teachers = {f"teacher{k}": rnd.sample(hosts, 3) for k in range(logouts)}
        sessions: dict[str, list[tuple[int, str]]] = {
            h: [(1, f"pupil{i}")] for i, h in enumerate(hosts)
        }
        for teacher, where in teachers.items():
            for host in where:
                sessions[host].append((len(sessions[host]) + 1, teacher))
        for i, host in enumerate(hosts):
            fleet.add(host, sessions[host], group=f"room{i // ROOM:04d}")

        started = time.monotonic()
        await fleet.start()
        announced = time.monotonic() - started

        async def indexed() -> bool:
            return int(await redis.scard("sortie:agents")) >= agents

        index_s = await wait_until(indexed, 600, 0.05) + announced
        mem1 = await used_memory(redis)

        accept: list[float] = []
        phase1: list[float] = []
        for teacher, where in teachers.items():
            fleet.handled.clear()
            t0 = time.monotonic()
            resp = await api.post(
                "/v1/logouts", json={"subject": {"user_id": teacher}, "targets": ["workstations"]}
            )
            accept.append(time.monotonic() - t0)
            assert resp.status_code == 202, resp.text
            location = resp.headers["Location"]

            async def reported(location: str = location) -> bool:
                view = (await api.get(location)).json()
                return view["status"] != "in_progress"

            await wait_until(reported, 60)
            phase1.append(time.monotonic() - t0)
            view = (await api.get(location)).json()
            touched = sorted(h for h, _ in fleet.handled)
            assert touched == sorted(where), (touched, where)
            assert sorted(view["services"]) == sorted(f"workstation:{h}" for h in where)
            assert all(s["state"] == "reported" for s in view["services"].values())

        t0 = time.monotonic()
        resp = await api.post("/v1/workstations/sessions:end", json={"group": "room0001"})
        room_accept = time.monotonic() - t0
        location = resp.headers["Location"]

        async def room_done() -> bool:
            return (await api.get(location)).json()["status"] in ("completed", "partial", "failed")

        room_total = await wait_until(room_done, 120) + room_accept
        room_view = (await api.get(location)).json()
        mem2 = await used_memory(redis)
        print(f"\n{agents} agents (one process), orchestrator process, redis-server")
        print(
            f"  presence indexed by the orchestrator   {index_s:8.2f} s"
            f" (announcing took {announced:.2f} s)"
        )
        print(f"  logout fan-out (HTTP accept)           {ms(accept)}   ({logouts} logouts)")
        print(f"  logout: 3 hosts reported               {ms(phase1)}")
        print(f"  hosts touched per logout               3 of {agents} (checked for every logout)")
        print(
            f"  classroom end ({ROOM} hosts)             accept {1000 * room_accept:7.1f} ms"
            f"   all reported {1000 * room_total:7.1f} ms   status {room_view['status']}"
        )
        print(
            f"  Redis used_memory                      empty {mem0 / 1e6:6.1f} MB   with agents"
            f" {mem1 / 1e6:6.1f} MB ({(mem1 - mem0) / agents:6.0f} B/agent)   after requests"
            f" {mem2 / 1e6:6.1f} MB"
        )
    finally:
        await fleet.stop()
        await api.aclose()
        await redis.aclose()
        orch.terminate()
        orch.wait(30)
        server.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--logouts", type=int, default=20)
    args = parser.parse_args()
    if max(args.agents) > 20000 or args.logouts > 500:
        raise SystemExit("keep it bounded: at most 20000 agents and 500 logouts")
    with tempfile.TemporaryDirectory(prefix="sortie-fanout-") as tmp:
        for n in args.agents:
            await run(n, args.logouts, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
