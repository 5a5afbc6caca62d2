"""A real orchestrator: uvicorn on 127.0.0.1 (own thread and event loop, lifespan on) over
its own throwaway redis-server, for clients that speak plain HTTP (scim2-tester,
schemathesis, the CLI, Chromium)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from sortie_orchestrator.app import create_app, uvicorn_options
from sortie_testkit.orchestrator import (
    LIVE,
    LIVE_ALL,
    LIVE_READER,
    LIVE_SCIM_TOKEN,
    LIVE_TOKEN,
    settings_for,
)
from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until

TOKEN = LIVE_TOKEN
SCIM_TOKEN = LIVE_SCIM_TOKEN
READER = LIVE_READER
ALL = LIVE_ALL


@contextmanager
def live_orchestrator(
    redis_server: RedisServer | str | None = None, **overrides: object
) -> Iterator[str]:
    """`redis_server`: share one (e.g. across a restart) or its URL (e.g. a Cluster's,
    with `redis_cluster=True`); by default a fresh one."""
    redis = redis_server or RedisServer().start()
    settings = settings_for(redis, **{**LIVE, **overrides})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(settings),
        )
    )
    thread = threading.Thread(target=server.run, name="live-orchestrator", daemon=True)
    thread.start()
    try:

        def started() -> bool:
            if not thread.is_alive():
                raise RuntimeError("the orchestrator did not start")
            return bool(server.started)

        wait_until(started, 20, 0.02, "the live orchestrator started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        if redis_server is None and isinstance(redis, RedisServer):
            redis.cleanup()
