from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from sortie_orchestrator.app import background, create_app
from sortie_testkit.orchestrator import READ_ONLY, TOKEN, settings_for
from tests.support import live

__all__ = ["READ_ONLY", "TOKEN", "client", "orchestrator", "settings_for"]


@pytest.fixture
async def orchestrator(redis, redis_server) -> AsyncIterator[FastAPI]:
    app = create_app(settings_for(redis_server))
    # What the lifespan does, without Starlette's lifespan wrapper: under pytest-asyncio
    # its exit never resumed once a request had gone through httpx's ASGITransport.
    async with background(app.state.wiring):
        yield app


@pytest.fixture
async def client(orchestrator: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=orchestrator)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://orchestrator",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


# For the modules that run a live orchestrator and give its URL as their `base` fixture.


@pytest.fixture
def scim(base: str) -> Iterator[httpx.Client]:
    """A SCIM client as an IdP's provisioning is one: the token with the scope `scim`."""
    headers = {
        "Authorization": f"Bearer {live.SCIM_TOKEN}",
        "Content-Type": "application/scim+json",
    }
    with httpx.Client(base_url=f"{base}/scim/v2", headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def api(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {live.TOKEN}"}) as c:
        yield c
