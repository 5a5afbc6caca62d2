"""Process plumbing shared by the workers: logging, the Redis client, the broker, a small
HTTP endpoint for `/metrics`, `/healthz` and `/readyz`, and a graceful shutdown on SIGTERM.

Nothing here runs at import time; a service's `app.py` calls `run_worker`, which runs
`running(...)`: the context manager that owns a process's consumers (tests use it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from faststream.redis import RedisBroker
from faststream.redis.prometheus import RedisPrometheusMiddleware
from faststream.security import BaseSecurity
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import BlockingConnectionPool, Redis

from .broker import Consumers, Subscription
from .metrics import REGISTRY
from .redis_cluster import cluster_broker, cluster_client, uses_cluster
from .redis_conn import sentinel_broker, sentinel_client, uses_sentinel
from .settings import ServiceSettings, default_consumer_name
from .tasks import cancel_tasks, dump_tasks_on_signal

log = logging.getLogger(__name__)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(settings: ServiceSettings, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Request lines of HTTP clients carry URLs with tickets in them: keep them quiet.
    for noisy in ("httpx", "httpcore", "faststream.access.redis"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _tls(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The TLS context of a `rediss://` URL: the system's CAs unless a CA file is set."""
    if not settings.redis_url.get_secret_value().startswith("rediss://"):
        return None
    context = ssl.create_default_context(cafile=settings.redis_ca_path)
    if settings.redis_cert_path:
        context.load_cert_chain(settings.redis_cert_path, settings.redis_key_path)
    return context


READ_TIMEOUT_MARGIN_S = 10.0


def read_timeout_s(settings: ServiceSettings) -> float:
    """How long any Redis reply may take: above the XREADGROUP BLOCK time (and every other
    blocking command's), so only a peer that stopped answering hits it. Without one, a
    reply lost with a half-dead connection (a failover, a partition) is awaited forever."""
    return settings.polling_interval_ms / 1000 + READ_TIMEOUT_MARGIN_S


CONNECT_TIMEOUT_S = 5.0


def pool_size(settings: ServiceSettings) -> int:
    """Connections one process may open: its handlers in flight, the claim loop and the
    readers, and room for the HTTP intake (orchestrator)."""
    return (
        settings.redis_max_connections
        or 2 * settings.concurrency + 16 + settings.redis_intake_connections
    )


def redis_client(settings: ServiceSettings) -> Redis:
    """One shared client per process. The pool waits (up to `redis_pool_timeout_s`) for a
    free connection instead of failing at once (redis-py's default pool raises
    MaxConnectionsError past 100); a wait that times out is a ConnectionError, which
    the intake answers with 503. TLS for a `rediss://` URL, with the CA and client
    certificate of the settings. Through Sentinel when sentinels are set (redis_conn.py)."""
    timeouts = {
        "socket_timeout": read_timeout_s(settings),
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    if uses_sentinel(settings):
        return sentinel_client(settings, pool_size(settings), **timeouts)
    if uses_cluster(settings):
        return cluster_client(settings, pool_size(settings), **timeouts)
    tls: dict[str, Any] = {}
    if _tls(settings) is not None:
        tls = {
            "ssl_ca_certs": settings.redis_ca_path,
            "ssl_certfile": settings.redis_cert_path,
            "ssl_keyfile": settings.redis_key_path,
        }
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=pool_size(settings),
        timeout=settings.redis_pool_timeout_s,
        health_check_interval=30,
        **timeouts,
        **tls,
    )
    return Redis.from_pool(pool)


def make_broker(settings: ServiceSettings) -> RedisBroker:
    context = _tls(settings)
    factory = _broker
    if uses_sentinel(settings):
        factory = sentinel_broker
    elif uses_cluster(settings):
        factory = cluster_broker
    return factory(
        settings,
        security=None if context is None else BaseSecurity(ssl_context=context, use_ssl=True),
        # The readers' XREADGROUP connections, one per subscription, and its publishes.
        max_connections=pool_size(settings),
        # Above the XREADGROUP BLOCK time: redis-py's default socket timeout is 5 s, as
        # long as an idle agent's block, so an idle read failed ("Timeout reading") and
        # FastStream then slept 5 s more before reading again.
        socket_timeout=read_timeout_s(settings),
        middlewares=[RedisPrometheusMiddleware(registry=REGISTRY)],
        graceful_timeout=settings.graceful_timeout_s,
        logger=logging.getLogger("faststream"),
        # One line per message is noise at INFO; it shows with SORTIE_*_LOG_LEVEL=DEBUG.
        log_level=logging.DEBUG,
    )


def _broker(settings: ServiceSettings, **kwargs: Any) -> RedisBroker:
    return RedisBroker(settings.redis_url.get_secret_value(), **kwargs)


def make_consumers(
    settings: ServiceSettings,
    service: str,
    broker: RedisBroker,
    redis: Redis,
    subscriptions: list[Subscription],
) -> Consumers:
    return Consumers(
        broker=broker,
        redis=redis,
        consumer=settings.consumer_name or default_consumer_name(service),
        subscriptions=subscriptions,
        concurrency=settings.concurrency,
        max_deliveries=settings.max_deliveries,
        claim_idle_ms=settings.claim_idle_ms,
        claim_interval_ms=settings.claim_interval_ms,
        polling_interval_ms=settings.polling_interval_ms,
        graceful_timeout_s=settings.graceful_timeout_s,
        consumer_expiry_s=settings.consumer_expiry_s,
        max_entry_bytes=settings.max_entry_bytes,
    )


@dataclass
class WorkerParts:
    """What a worker's bootstrap hands to `run_worker`."""

    subscriptions: list[Subscription]
    background: Sequence[Callable[[], Awaitable[None]]] = ()
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    readiness: Sequence[Callable[[], Awaitable[bool]]] = field(default_factory=list)


async def _send(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def health_app(redis: Redis, readiness: Sequence[Callable[[], Awaitable[bool]]] = ()) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if path == "/metrics":
            await _send(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            return
        status, body = 404, {"status": "not found"}
        if path == "/healthz":
            status, body = 200, {"status": "ok"}
        elif path == "/readyz":
            ok = True
            try:
                await redis.ping()
                for check in readiness:
                    ok = ok and await check()
            except Exception:
                ok = False
            status, body = (200, {"status": "ready"}) if ok else (503, {"status": "not ready"})
        await _send(send, status, json.dumps(body).encode(), "application/json")

    return app


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `run_worker` owns SIGTERM/SIGINT.
    uvicorn also wakes ten times a second to look at `should_exit`; here the loop sleeps
    until it is set (or a second passed, for the `Date` header), so an idle process idles."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes `Date` on multiples of 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    """A process's parts while `running(...)` holds them."""

    redis: Redis
    broker: RedisBroker
    consumers: Consumers
    parts: WorkerParts

    async def ready(self) -> bool:
        if not self.consumers.healthy():
            return False
        for check in self.parts.readiness:
            if not await check():
                return False
        return True


@contextlib.asynccontextmanager
async def consuming(broker: RedisBroker, consumers: Consumers) -> AsyncIterator[None]:
    """Groups, claim loop and readers, then, on the way out, the readers stopped and the
    handlers in flight finished (the orchestrator's lifespan uses this too)."""
    await consumers.start()
    try:
        await broker.start()
        yield
    finally:
        await broker.stop()
        await consumers.stop()


@contextlib.asynccontextmanager
async def running(
    service: str,
    settings: ServiceSettings,
    build: Callable[[RedisBroker, Redis], Awaitable[WorkerParts]],
) -> AsyncIterator[Running]:
    """One worker's whole lifecycle: clients, subscriptions, background jobs; on exit,
    everything stopped in order and every client closed."""
    redis = redis_client(settings)
    broker = make_broker(settings)
    try:
        parts = await build(broker, redis)
        consumers = make_consumers(settings, service, broker, redis, parts.subscriptions)
        async with consuming(broker, consumers):
            background = [asyncio.ensure_future(job()) for job in parts.background]
            try:
                yield Running(redis, broker, consumers, parts)
                log.info(
                    "%s stopping: finishing %d handlers in flight", service, consumers.in_flight
                )
            finally:
                await cancel_tasks(background)
        for hook in parts.on_stop:
            with contextlib.suppress(Exception):
                await hook()
    finally:
        await redis.aclose()
        await broker.stop()


def settle_heap() -> None:
    """Call once the process is built: what start-up made (modules, models, the app) moves
    to the collector's permanent generation, so a full collection no longer walks it. In
    the orchestrator that is ~140,000 objects and ~200 ms of pause per full collection on
    a 2-core machine, all of it in the tail of request latency (bench/e2e.py --latency)."""
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run`, on uvloop where it is installed (not on Windows): less CPU per
    socket read and write for every Redis and HTTP call of the process."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def run_worker(
    service: str,
    settings: ServiceSettings,
    build: Callable[[RedisBroker, Redis], Awaitable[WorkerParts]],
) -> None:
    """Run one worker process until SIGTERM/SIGINT, then stop gracefully."""
    setup_logging(settings, service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dump_tasks_on_signal()
    async with running(service, settings, build) as proc:
        server = _QuietServer(
            uvicorn.Config(
                health_app(proc.redis, [proc.ready]),
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                lifespan="off",
            )
        )
        http_task = asyncio.create_task(server.serve())
        settle_heap()
        log.info("%s started (consumer %s)", service, proc.consumers.consumer)
        await stop.wait()
        server.should_exit = True
        await http_task
    log.info("%s stopped", service)
