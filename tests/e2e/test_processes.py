"""Each service as a real process (`python -m <package>`): it serves /healthz, does its job
through Redis, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until_async
from tests.support.stub_http import Reply, StubHttp
from tests.support.workers import command, logout, wait_for_events


async def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:

        async def healthy() -> bool:
            assert proc.poll() is None, "the service exited early"
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await wait_until_async(healthy, 20, 0.1, "the service healthy")
        ready = await client.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
        assert ready.status_code == 200


@pytest.mark.parametrize(
    ("package", "prefix", "stream", "extra", "reports"),
    [
        ("sortie_m365", "SORTIE_M365_", streams.LOGOUT_REQUESTED, {}, streams.REVOCATION_COMPLETED),
        ("sortie_ent", "SORTIE_ENT_", streams.LOGOUT_REQUESTED, {}, streams.REVOCATION_COMPLETED),
        (
            "sortie_workstation",
            "SORTIE_AGENT_",
            "workstation.pc-101",
            {"HOST": "pc-101"},
            "agent.results.pc-101",
        ),
    ],
)
async def test_service_process_runs_and_stops_cleanly(
    redis: Redis,
    redis_server: RedisServer,
    serve: Callable[[Any], str],
    package: str,
    prefix: str,
    stream: str,
    extra: dict[str, str],
    reports: str,
) -> None:
    stub = StubHttp(lambda seen: Reply(200, [] if seen.method == "GET" else {"value": True}))
    peer = serve(stub)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORTIE_")}
    env |= {
        "REDIS_URL": redis_server.url,
        f"{prefix}HTTP_PORT": str(port),
        f"{prefix}POLLING_INTERVAL_MS": "20",
        f"{prefix}GRAPH_URL": peer,
        f"{prefix}CAS_URL": peer + "/cas",
        f"{prefix}SIM_URL": peer,
        f"{prefix}LOG_JSON": "true",
    } | {prefix + k: v for k, v in extra.items()}
    proc = subprocess.Popen(
        [sys.executable, "-m", package], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await _wait_healthy(port, proc)
        event = logout()
        await command(redis, stream, event)
        [done] = await wait_for_events(redis, reports, timeout_s=15)
        assert done.request_id == event.request_id
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b'"level": "ERROR"' not in stderr, stderr.decode()[-2000:]
    assert b"stopped" in stderr
