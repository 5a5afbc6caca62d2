"""A real orchestrator: uvicorn on 127.0.0.1 (own thread and event loop, lifespan on) over
its own throwaway redis-server, for clients that speak plain HTTP (scim2-tester,
schemathesis, the CLI, Chromium)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from sortie_orchestrator.app import create_app, uvicorn_options
from sortie_orchestrator.settings import OrchestratorSettings, TokenSpec
from tests.redis_server import RedisServer, free_port

TOKEN = "live-token-all-scopes-0123456789"
SCIM_TOKEN = "live-token-scim-only-0123456789a"
READER = "live-token-read-only-0123456789a"
ALL = frozenset({"logout:write", "offboard:write", "requests:read", "workstations:admin", "scim"})


@contextmanager
def live_orchestrator(
    redis_server: RedisServer | None = None, **overrides: object
) -> Iterator[str]:
    """`redis_server`: share one (e.g. across a restart); by default a fresh one."""
    redis = redis_server or RedisServer().start()
    values: dict[str, object] = dict(
        redis_url=redis.url,
        tokens=[
            TokenSpec(name="all", token=TOKEN, scopes=ALL),
            TokenSpec(name="hr", token=SCIM_TOKEN, scopes=frozenset({"scim"})),
            TokenSpec(name="helpdesk", token=READER, scopes=frozenset({"requests:read"})),
        ],
        phase1_timeout_s=1.0,
        sso_timeout_s=1.0,
        deadline_poll_ms=50,
        polling_interval_ms=20,
        consumer_name="orch-live",
    )
    values.update(overrides)
    settings = OrchestratorSettings(**values)  # type: ignore[arg-type]
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
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the orchestrator did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        if redis_server is None:
            redis.cleanup()
