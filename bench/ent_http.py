"""The ENT worker's HTTP work per logout, without Redis: the handlers of a logout and of
its SSO logout (`handle_logout`, `handle_sso_logout`) with the real aiohttp adapters,
against the CAS and ENT applications simulators run as processes (as `sortie up` runs
them: the demo registry, two CAS applications, one `http`, one `oidc_bcl` whose tokens
the simulator verifies against this script's JWKS). Prints CPU ms per saga of this
process (the handlers) and of each simulator process.

    .venv/bin/python bench/ent_http.py [--sagas 2000] [--concurrency 64] [--sessions N]

`--sessions` (default: as many as sagas) is how many SSO sessions the CAS holds; each
saga logs one of them out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sortie_cli.stack_files import demo_registry
from sortie_core.events import Kind, LogoutRequested, SsoLogoutRequested, Subject, Target, utcnow
from sortie_core.jwks import generate_key_pem
from sortie_core.runtime import run as run_loop
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.http import CasRestSessions, HttpAppLogout
from sortie_ent.handlers import handle_logout, handle_sso_logout
from sortie_ent.oidc import LogoutTokenSigner
from sortie_ent.registry import load_registry
from sortie_simulators.demo import DEMO_CAS_APPS, demo_service_url

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def simulator(name: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sortie_simulators", name, "--port", str(port), *extra]
    )


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


async def serve_jwks(signer: LogoutTokenSigner, port: int) -> web.AppRunner:
    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [signer.public_jwk]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def seed(cas_url: str, apps_url: str, count: int) -> None:
    services = [demo_service_url(apps_url, app) for app in DEMO_CAS_APPS]
    slots = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(n: int) -> None:
            async with slots:
                made = await client.post(
                    f"{cas_url}/_sim/sessions",
                    json={"username": f"bench{n:05d}", "services": services},
                )
                made.raise_for_status()

        await asyncio.gather(*(one(n) for n in range(count)))


def events(n: int) -> tuple[LogoutRequested, SsoLogoutRequested]:
    user = f"bench{n:05d}"
    subject = Subject(user_id=user, upn=f"{user}@example.org", cas_username=user)
    rid = uuid.uuid4()
    return (
        LogoutRequested(
            request_id=rid,
            subject=subject,
            targets=(Target.M365, Target.ENT),
            deadline=utcnow() + timedelta(minutes=10),
        ),
        SsoLogoutRequested(request_id=rid, subject=subject, kind=Kind.LOGOUT),
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    jwks_port, cas_port, apps_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{jwks_port}"
    signer = LogoutTokenSigner(generate_key_pem(), issuer=issuer)
    jwks = await serve_jwks(signer, jwks_port)
    apps_url, cas_url = f"http://127.0.0.1:{apps_port}", f"http://127.0.0.1:{cas_port}"
    sims = {
        "sim-entapps": simulator(
            "entapps", apps_port, "--seed-demo", "--jwks-url", f"{issuer}/.well-known/jwks.json"
        ),
        "sim-cas": simulator("cas", cas_port, "--entapps-url", apps_url),
    }
    try:
        await wait_up(f"{apps_url}/_sim/apps")
        await wait_up(f"{cas_url}/_sim/config")
        await seed(cas_url, apps_url, max(args.sessions or args.sagas, args.sagas))
        registry = load_registry(demo_registry(workdir, apps_url))
        apps = HttpAppLogout({"mer": SecretStr("bench-token")})
        sso = CasRestSessions(f"{cas_url}/cas")
        policy = RetryPolicy(max_attempts=3, base_s=0.05, max_s=0.2, verify_delay_s=0.0)
        todo = [events(n) for n in range(args.sagas)]
        failed = 0
        parts: dict[str, Any] = {"registry": registry, "apps": apps, "sso": sso, "policy": policy}

        async def sagas() -> None:
            # `concurrency` of these, not a task per saga behind a semaphore (its acquire
            # costs O(waiters) in Python 3.11).
            nonlocal failed
            while todo:
                logout, sso_logout = todo.pop()
                done = await handle_logout(logout, signer=signer, **parts)
                ended = await handle_sso_logout(sso_logout, **parts)
                steps = [*(done.steps if done else ()), *ended.steps]
                failed += sum(1 for s in steps if not s.done)

        pids = {name: p.pid for name, p in sims.items()}
        before = {name: cpu_s(pid) for name, pid in pids.items()} | {"ent": time.process_time()}
        started = time.monotonic()
        await asyncio.gather(*(sagas() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
        after = {name: cpu_s(pid) for name, pid in pids.items()} | {"ent": time.process_time()}
        await apps.aclose()
        await sso.aclose()
    finally:
        for proc in sims.values():
            proc.terminate()
            proc.wait()
        await jwks.cleanup()
    print(f"{args.sagas} sagas in {elapsed:.1f} s, {failed} steps not done")
    return {name: 1000 * (after[name] - before[name]) / args.sagas for name in before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=0)
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    figures: dict[str, float] = {}

    async def bench() -> None:
        with tempfile.TemporaryDirectory(prefix="sortie-bench-") as tmp:
            figures.update(await run(args, Path(tmp)))

    run_loop(bench())  # uvloop, as the worker runs
    print(f"load average (1 min) before/after: {load0:.1f} / {os.getloadavg()[0]:.1f}")
    print("CPU ms per saga:")
    for name, ms in figures.items():
        print(f"  {name:12s} {ms:7.2f}")


if __name__ == "__main__":
    main()
