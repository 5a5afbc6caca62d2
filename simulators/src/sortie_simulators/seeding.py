"""Fills the simulators with subjects that exist where real ones would, through their own
admin APIs: an M365 account in the Graph simulator (`{prefix}{n:05d}@{domain}`) and an SSO
session in the CAS simulator whose tickets reach every CAS application of the demo
registry. Used by the benches, so that each revocation is real work."""

from __future__ import annotations

import asyncio

import httpx

from .demo import DEMO_CAS_APPS, demo_service_url


def subject_name(prefix: str, n: int) -> str:
    return f"{prefix}{n:05d}"


async def seed_subjects(
    urls: dict[str, str], prefix: str, count: int, domain: str = "example.org"
) -> None:
    """`urls`: a running stack's, with `sim_graph`, `sim_cas` and `sim_entapps`."""
    services = [demo_service_url(urls["sim_entapps"], app) for app in DEMO_CAS_APPS]
    async with httpx.AsyncClient(timeout=60) as client:
        made = await client.post(
            f"{urls['sim_graph']}/_sim/users:bulk",
            json={"prefix": prefix, "domain": domain, "start": 0, "count": count},
        )
        made.raise_for_status()
        slots = asyncio.Semaphore(32)

        async def session(n: int) -> None:
            async with slots:
                resp = await client.post(
                    f"{urls['sim_cas']}/_sim/sessions",
                    json={"username": subject_name(prefix, n), "services": services},
                )
                resp.raise_for_status()

        await asyncio.gather(*(session(n) for n in range(count)))
