"""A whole offboarding profile through the real path, for bench/m365_offboard.py
`--profile NAME`: `sortie up`'s processes, `POST /v1/offboardings {profile}` on the HTTP
intake → streams → m365-worker (msgraph-sdk, Exchange through the simulator's
InvokeCommand) and ent-worker/agents → the Graph simulator's latency and write throttle.

The profile's later phases (30 and 60 days for staff-leaves) are brought forward to
`--phase-gap-s` apart by a profiles file that redefines it with the same actions and
options, so every action of every phase runs. Each user holds licences, groups, a device
and a phone method (`/_sim/leaver:seed`). Prints the users whose every phase finished per
second, the Graph writes per second against the throttle, the 429s, and the phases'
outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from sortie_cli.stack import Stack
from sortie_orchestrator.profiles import Profiles

FINISHED = {"completed", "partial", "failed", "cancelled"}


def profiles_file(name: str, gap_s: float, workdir: Path) -> Path:
    """`name` as built in, its later phases `gap_s` apart."""
    _, profile = Profiles().get(name)
    phases = []
    for index, phase in enumerate(profile.phases):
        raw = phase.model_dump(mode="json")
        raw["after"] = index * gap_s
        phases.append(raw)
    path = workdir / "profiles.json"
    data = {"profiles": {name: {"description": profile.description, "phases": phases}}}
    path.write_text(json.dumps(data))
    return path


def all_done(view: dict[str, Any]) -> bool:
    return view.get("status") in FINISHED and all(
        p.get("status") in FINISHED for p in view.get("phases", [])
    )


async def watch(api: httpx.AsyncClient, wanted: list[str], wait_s: float) -> dict[str, Any]:
    """Every request's view once all its phases ended (or the wait ran out)."""
    views: dict[str, Any] = {}
    pending = list(wanted)
    deadline = time.monotonic() + wait_s
    limit = asyncio.Semaphore(16)

    async def look(rid: str) -> None:
        async with limit:
            view = (await api.get(f"/v1/requests/{rid}")).json()
        if all_done(view):
            views[rid] = view

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(look(r) for r in pending))
        pending = [r for r in pending if r not in views]
        if pending:
            await asyncio.sleep(0.5)
    return views


async def drive(stack: Stack, args: argparse.Namespace) -> None:
    graph = stack.urls["sim_graph"]
    async with httpx.AsyncClient(base_url=graph, timeout=30) as admin:
        made = await admin.post(
            "/_sim/users:bulk", json={"count": args.users, "prefix": "bench",
                                      "domain": "example.org"},
        )  # fmt: skip
        made.raise_for_status()
        (await admin.post("/_sim/leaver:seed", json={"prefix": "bench"})).raise_for_status()
        config = {"latency_ms": args.latency_ms, "throttle_writes_per_s": args.throttle,
                  "throttle_tenant_writes_per_s": args.throttle}  # fmt: skip
        (await admin.post("/_sim/config", json=config)).raise_for_status()
        await admin.post("/_sim/reset-stats")
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.urls["api"], headers=headers,
                                     timeout=30) as api:  # fmt: skip
            started = time.monotonic()
            queue = list(range(1, args.users + 1))
            wanted: list[str] = []

            async def client() -> None:
                while queue:
                    n = queue.pop()
                    subject = {"user_id": f"bench{n:05d}", "upn": f"bench{n:05d}@example.org"}
                    resp = await api.post(
                        "/v1/offboardings", json={"subject": subject, "profile": args.profile}
                    )
                    resp.raise_for_status()
                    wanted.append(resp.json()["request_id"])

            await asyncio.gather(*(client() for _ in range(16)))
            views = await watch(api, wanted, args.wait_s)
            wall = time.monotonic() - started
        stats = (await admin.get("/_sim/stats")).json()
    show(args, wanted, views, wall, stats)


def show(
    args: argparse.Namespace,
    wanted: list[str],
    views: dict[str, Any],
    wall: float,
    stats: dict[str, int],
) -> None:
    outcomes: Counter[str] = Counter()
    for view in views.values():
        outcomes[f"phase 0 {view['status']}"] += 1
        for phase in view.get("phases", [])[1:]:
            outcomes[f"phase {phase['index']} {phase['status']}"] += 1
    # The last phase starts `gap * (phases - 1)` after the first POST at the earliest.
    phases = max((len(v.get("phases", [])) for v in views.values()), default=1)
    floor = args.phase_gap_s * (phases - 1)
    rate = len(views) / wall
    print(f"profile {args.profile}, {args.users} users, {args.latency_ms:g} ms per Graph call, "
          f"throttle {args.throttle:g} writes/s, phases {args.phase_gap_s:g} s apart")  # fmt: skip
    print(f"  users with every phase finished  {len(views)} of {len(wanted)} in {wall:.1f} s "
          f"= {rate:.2f} users/s (the phases' dates alone take {floor:g} s)")  # fmt: skip
    print(f"  Graph writes                     {stats['writes']}: {stats['writes'] / wall:.1f}/s "
          f"= {100 * stats['writes'] / wall / args.throttle:.0f}% of the throttle; "
          f"{stats['writes'] / max(1, len(views)):.1f} per user")  # fmt: skip
    print(f"  429s received                    {stats['throttled']}")
    print(f"  outcomes                         {dict(sorted(outcomes.items()))}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="staff-leaves")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--throttle", type=float, default=20.0, help="writes/s (Graph: ~20)")
    parser.add_argument("--phase-gap-s", type=float, default=5.0)
    parser.add_argument("--wait-s", type=float, default=600)
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 5000 or args.phase_gap_s <= 0:
        raise SystemExit("--users within 1..5000, --phase-gap-s > 0")
    workdir = Path(tempfile.mkdtemp(prefix="sortie-m365-profile-"))
    env = {
        "PATH": "/usr/bin:/bin",
        "SORTIE_ORCHESTRATOR_PROFILES_FILE": str(
            profiles_file(args.profile, args.phase_gap_s, workdir)
        ),
        "SORTIE_ORCHESTRATOR_PHASE1_TIMEOUT_S": "600",
        "SORTIE_M365_APP_WRITES_LIMIT": str(args.throttle),
        "SORTIE_M365_APP_WRITES_WINDOW_S": "1",
        "SORTIE_M365_TENANT_WRITES_LIMIT": str(args.throttle),
        "SORTIE_M365_TENANT_WRITES_WINDOW_S": "1",
        "SORTIE_M365_GRAPH_LATENCY_S": str(args.latency_ms / 1000),
        **{f"SORTIE_{s}_LOG_LEVEL": "WARNING" for s in ("ORCHESTRATOR", "M365", "ENT", "AGENT")},
    }
    stack = Stack(workdir=workdir, api_port=0, base_env=env)
    stack.plan()
    try:
        stack.start(timeout=90)
        asyncio.run(drive(stack, args))
    finally:
        stack.stop()
