"""The console's export of a day (`/ui/export?day=`), over real HTTP from a real
orchestrator and Redis: with 1,000 requests that day, the first bytes come in under a
second (it streams, it does not build the file first) and every request is in it."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from sortie_testkit.redis_server import RedisServer
from tests.support.live import TOKEN, live_orchestrator

COUNT = 1000


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    redis = RedisServer().start()
    try:
        with live_orchestrator(redis) as base:
            yield base
    finally:
        redis.cleanup()


async def seed(url: str) -> set[str]:
    """1,000 offboardings scheduled in three days, half of them of each site."""
    at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as client:

        async def one(i: int) -> str:
            site = "0750001A" if i % 2 else "0750002B"
            body = {"subject": {"user_id": f"user{i:04d}", "site": site}, "effective_at": at}
            async with gate:
                resp = await client.post("/v1/offboardings", json=body)
            assert resp.status_code == 202, resp.text
            return str(resp.json()["request_id"])

        return set(await asyncio.gather(*(one(i) for i in range(COUNT))))


def sign_in(client: httpx.Client) -> None:
    """The break-glass sign-in of the console, with an API token."""
    resp = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
    assert resp.status_code == 303


async def test_the_export_of_a_day_of_1000_requests_streams_at_once_and_is_complete(
    url: str,
) -> None:
    ids = await seed(url)
    assert len(ids) == COUNT
    day = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    for fmt in ("csv", "json"):
        with httpx.Client(base_url=url, timeout=30) as client:
            sign_in(client)
            started = time.monotonic()
            with client.stream("GET", "/ui/export", params={"day": day, "format": fmt}) as resp:
                assert resp.status_code == 200
                chunks = resp.iter_bytes()
                first = next(chunks)
                first_after = time.monotonic() - started
                body = first + b"".join(chunks)
            whole_after = time.monotonic() - started
        assert first_after < 1.0, f"{fmt}: first bytes after {first_after:.3f} s"
        # It really streamed: the first chunk is not the whole file.
        assert len(first) < len(body), fmt
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            found = {r["request_id"] for r in rows}
        else:
            found = {i["request_id"] for i in json.loads(body)}
        assert found == ids, fmt
        print(f"{fmt}: first bytes {first_after:.3f} s, all {len(body)} bytes {whole_after:.3f} s")
