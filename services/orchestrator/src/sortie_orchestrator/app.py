"""The orchestrator process: FastAPI for HTTP, FastStream consumers for worker reports,
and two loops: deadlines (every replica polls; commits are compare-and-set) and a
sweeper for gauges and index retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sortie_core import services, streams
from sortie_core.events import Kind, utcnow
from sortie_core.metrics import (
    AGENTS_ONLINE,
    FOLLOWUP_PENDING,
    REGISTRY,
    REQUESTS_IN_FLIGHT,
    REQUESTS_OVERDUE,
)
from sortie_core.runtime import cancel_tasks, consuming, settle_heap, setup_logging
from sortie_core.settings import load_settings
from sortie_core.tasks import dump_tasks_on_signal, pause
from sortie_core.trim import trim_stream
from sortie_orchestrator import handlers
from sortie_orchestrator.bootstrap import Wiring, bootstrap
from sortie_orchestrator.http import (
    actions,
    asyncapi,
    docs,
    export,
    intake,
    jwks,
    preview,
    problems,
    requests,
    reversal,
    workstations,
)
from sortie_orchestrator.http.guards import FailedAuth
from sortie_orchestrator.http.scim import routes
from sortie_orchestrator.http.security import SecurityHeaders
from sortie_orchestrator.http.ui import console, login_sso, logoutpage, stations, statuspage
from sortie_orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

TRIM_EVERY_S = 60.0
# The deadline loop fires a deadline within a poll interval; one still pending this long
# after it passed means no replica is firing deadlines (alert SortieRequestsStuck).
OVERDUE_GRACE_S = 30.0


async def _deadline_loop(wiring: Wiring) -> None:
    interval = wiring.settings.deadline_poll_ms / 1000
    while True:
        try:
            due = await wiring.deps.store.due(utcnow())
            if due:
                await asyncio.gather(*(handlers.fire_deadline(wiring.deps, rid) for rid in due))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("deadline loop iteration failed")
        await pause(interval)


async def _trim_streams(wiring: Wiring) -> None:
    now = time.monotonic()
    if now - wiring.last_trim < TRIM_EVERY_S:
        return
    wiring.last_trim = now
    retention = wiring.settings.stream_retention_days * 86400
    hosts = await wiring.deps.presence.host_names()
    names = [*streams.ALL_FIXED_STREAMS]
    for host in filter(streams.valid_host, hosts):
        names += [
            streams.workstation_stream(host),
            streams.agent_results_stream(host),
            streams.agent_deadletter_stream(host),
        ]
    for name in names:
        await trim_stream(wiring.redis, name, retention)


async def _sweep_loop(wiring: Wiring) -> None:
    while True:
        try:
            for kind in Kind:
                REQUESTS_IN_FLIGHT.labels(kind.value).set(
                    await wiring.deps.store.in_flight(kind.value)
                )
            AGENTS_ONLINE.set(await wiring.deps.presence.count_online())
            pending = await wiring.deps.store.followups_pending()
            for service in (services.M365, services.ENT, services.SSO, "workstation"):
                FOLLOWUP_PENDING.labels(service).set(pending.get(service, 0))
            REQUESTS_OVERDUE.set(
                await wiring.deps.index.overdue(utcnow() - timedelta(seconds=OVERDUE_GRACE_S))
            )
            await wiring.deps.index.discover()
            await wiring.deps.store.trim_indexes(utcnow())
            await _trim_streams(wiring)
            # Reports whose announcement was lost (an agent or replica crashed between).
            await wiring.results.redrain_if_due()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep loop iteration failed")
        await pause(wiring.settings.sweep_interval_s)


def _said_if_ended(task: asyncio.Task[None]) -> None:
    """A background loop is meant to run until shutdown: one that ends says why at once
    (`/readyz` answers 503 from then on)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background loop %s ended: %r", task.get_name(), exc, exc_info=exc)


@contextlib.asynccontextmanager
async def background(wiring: Wiring) -> AsyncIterator[None]:
    """Consumers, broker and loops: what runs beside the HTTP app."""
    try:
        async with consuming(wiring.broker, wiring.consumers):
            loops = [
                asyncio.create_task(_deadline_loop(wiring), name="deadlines"),
                asyncio.create_task(_sweep_loop(wiring), name="sweeper"),
                asyncio.create_task(wiring.watch.listen(), name="agent-wake"),
                asyncio.create_task(wiring.watch.sweep_loop(), name="presence-sweep"),
                *(asyncio.create_task(job(), name="relay") for job in wiring.relays),
            ]
            for task in loops:
                task.add_done_callback(_said_if_ended)
            wiring.loops = loops
            dump_tasks_on_signal()
            settle_heap()  # start-up's objects out of every later full collection
            log.info("orchestrator ready (consumer %s)", wiring.consumers.consumer)
            try:
                yield
            finally:
                await cancel_tasks(loops)
                await wiring.watch.aclose()
    finally:
        await wiring.redis.aclose()


# The routers, in the order the API's documentation lists them.
_ROUTES = (
    intake,
    requests,
    preview,
    actions,
    export,
    reversal,
    jwks,
    routes,
    statuspage,
    login_sso,
    console,
    stations,
    logoutpage,
    asyncapi,
    workstations,
)


def _probes(app: FastAPI, wiring: Wiring) -> None:
    """Metrics, liveness and readiness (not in the API's documentation)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if not await wiring.reachable():
            return JSONResponse({"status": "redis unreachable"}, status_code=503)
        if not wiring.consumers.healthy() or any(t.done() for t in wiring.loops):
            return JSONResponse({"status": "subscribers stopped"}, status_code=503)
        return JSONResponse({"status": "ready"})


def create_app(settings: OrchestratorSettings) -> FastAPI:
    wiring = bootstrap(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with background(wiring):
            yield

    app = FastAPI(
        title="Sortie orchestrator",
        version="0.1.0",
        description="Ends a person's access everywhere, in the right order, and proves it.",
        lifespan=lifespan,
        # Served by docs.py from packaged assets, never from a CDN; ReDoc is not served.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.deps = wiring.deps
    app.state.wiring = wiring
    app.state.token_table = settings.token_table()
    app.state.token_sites = settings.token_sites()
    app.state.failed_auth = FailedAuth(settings.auth_failure_limit, settings.auth_failure_window_s)
    problems.install(app)
    if settings.docs_enabled:
        docs.install(app)
    for module in _ROUTES:
        app.include_router(module.router)
    _probes(app, wiring)

    app.add_middleware(
        problems.BodyLimit,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(SecurityHeaders, force_secure=settings.force_secure)
    return app


def uvicorn_options(settings: OrchestratorSettings) -> dict[str, Any]:
    """uvicorn's ProxyHeadersMiddleware: X-Forwarded-* believed only from
    `trusted_proxies`; idle keep-alive connections kept `http_keep_alive_s`."""
    return {
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "timeout_keep_alive": settings.http_keep_alive_s,
    }


def main() -> None:
    settings = load_settings(OrchestratorSettings)
    setup_logging(settings, "orchestrator")
    if not settings.tokens and settings.dev_token is None:
        log.warning("no API token configured: every authenticated call will be refused")
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        **uvicorn_options(settings),
    )
