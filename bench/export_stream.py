"""The audit export of one day: time to the first byte and to the last, CSV and JSON,
over real HTTP (uvicorn), from a Redis holding `--requests` finished requests (each with
five steps). Starts its own redis-server; prints figures.

    .venv/bin/python bench/export_stream.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.request_memory import one
from sortie_orchestrator.app import background, create_app
from sortie_testkit.orchestrator import TOKEN, settings_for
from sortie_testkit.redis_server import RedisServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(base: str, fmt: str, since: datetime) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    params = {"since": since.isoformat(), "format": fmt}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        t0 = time.perf_counter()
        async with client.stream("GET", "/v1/requests:export", params=params) as resp:
            resp.raise_for_status()
            first = None
            size = 0
            async for chunk in resp.aiter_bytes():
                if first is None:
                    first = time.perf_counter() - t0
                size += len(chunk)
        return first or 0.0, time.perf_counter() - t0, size


async def main(n: int) -> None:
    server = RedisServer().start()
    try:
        app = create_app(settings_for(server))
        port = free_port()
        web = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
        async with background(app.state.wiring):
            since = datetime.now(UTC) - timedelta(minutes=1)
            sem = asyncio.Semaphore(32)

            async def bounded(i: int) -> None:
                async with sem:
                    await one(app.state.deps, i)

            t0 = time.perf_counter()
            await asyncio.gather(*(bounded(i) for i in range(n)))
            print(f"requests seeded            {n} in {time.perf_counter() - t0:.1f} s")
            task = asyncio.create_task(web.serve())
            while not web.started:
                await asyncio.sleep(0.05)
            for fmt in ("csv", "json"):
                first, total, size = await measure(f"http://127.0.0.1:{port}", fmt, since)
                print(
                    f"export {fmt:<4}                time to first byte {first * 1000:.0f} ms, "
                    f"complete in {total * 1000:.0f} ms, {size / 1e6:.1f} MB"
                )
            web.should_exit = True
            await task
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    asyncio.run(main(parser.parse_args().requests))
