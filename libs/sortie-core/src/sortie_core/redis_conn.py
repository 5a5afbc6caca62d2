"""Redis through Sentinel: the client and the broker of a process when
`SORTIE_REDIS_SENTINELS` is set (runtime.py asks here first).

Both ask the sentinels for the master of `redis_sentinel_master` at every new connection
(redis-py's `SentinelConnectionPool`), so a failover is followed without a restart:

* a connection to the dead master fails (ConnectionError); redis-py closes it and the
  next command connects afresh, to the address the sentinels give. While they have not
  elected a new master yet they report the old one down: `MasterNotFoundError`, a
  ConnectionError, which the intake answers with 503 and `Retry-After`;
* when the pool sees the address change it closes its idle connections to the old one;
* an old master that comes back as a replica answers READONLY: redis-py turns that into a
  ConnectionError and reconnects to the real master.

FastStream's `RedisSentinelBroker` (FastStream 0.7.8) builds its client the same way
(`Sentinel.master_for`), so its XREADGROUP readers and publishes follow too. Its TLS must
not come through `security` (that would replace the sentinel-managed connection class
with a plain one, pinned to one host): the TLS options go in as connection arguments.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.redis import RedisSentinelBroker
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.commands.core import AsyncScript

from .settings import ServiceSettings, sentinel_nodes

log = logging.getLogger(__name__)


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's pool that waits for a free connection (like the single-Redis
    client's `BlockingConnectionPool`) instead of failing at once when all are busy."""


def uses_sentinel(settings: ServiceSettings) -> bool:
    return bool(settings.redis_sentinels)


def _tls_options(settings: ServiceSettings, on: bool) -> dict[str, Any]:
    if not on:
        return {}
    return {
        "ssl_ca_certs": settings.redis_ca_path,
        "ssl_certfile": settings.redis_cert_path,
        "ssl_keyfile": settings.redis_key_path,
    }


def master_options(settings: ServiceSettings) -> dict[str, Any]:
    """Connection arguments for the master: user, password and db of the URL (not its
    host and port), TLS when the URL is `rediss://`."""
    url = settings.redis_url.get_secret_value()
    parsed = dict(parse_url(url))
    for unused in ("host", "port", "connection_class"):
        parsed.pop(unused, None)
    tls = url.startswith("rediss://")
    parsed["connection_class"] = SentinelManagedSSLConnection if tls else SentinelManagedConnection
    return parsed | _tls_options(settings, tls)


def sentinel_options(settings: ServiceSettings) -> dict[str, Any]:
    """Connection arguments for the sentinels themselves."""
    tls = settings.redis_sentinel_tls
    if tls is None:
        tls = settings.redis_url.get_secret_value().startswith("rediss://")
    options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if settings.redis_sentinel_username:
        options["username"] = settings.redis_sentinel_username
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    if tls:
        options["ssl"] = True
    return options | _tls_options(settings, tls)


def _nodes(settings: ServiceSettings) -> list[tuple[str, int]]:
    return sentinel_nodes(settings.redis_sentinels or "")


def sentinel_client(settings: ServiceSettings, max_connections: int, **timeouts: float) -> Redis:
    """The process's shared client on the current master; `timeouts`: socket_timeout,
    socket_connect_timeout of its connections."""
    options = master_options(settings)
    sentinel = Sentinel(_nodes(settings), sentinel_kwargs=sentinel_options(settings))
    return sentinel.master_for(  # type: ignore[no-any-return]
        settings.redis_sentinel_master,
        connection_pool_class=BlockingSentinelPool,
        max_connections=max_connections,
        timeout=settings.redis_pool_timeout_s,
        health_check_interval=30,
        **{**options, **timeouts},
    )


def sentinel_broker(settings: ServiceSettings, **kwargs: Any) -> RedisSentinelBroker:
    """FastStream's broker on the current master; `kwargs` as for `RedisBroker`, without
    `security` (TLS comes from the settings here)."""
    kwargs.pop("security", None)
    return RedisSentinelBroker(
        settings.redis_url.get_secret_value(),
        sentinels=_nodes(settings),
        sentinel_master_name=settings.redis_sentinel_master,
        sentinel_kwargs=sentinel_options(settings),
        **master_options(settings),
        **kwargs,
    )


async def run_then_wait(
    redis: Redis,
    script: AsyncScript,
    keys: list[Any],
    args: list[Any],
    *,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """`script`'s result, and how many replicas hold its write (WAIT).

    WAIT counts the replicas that acknowledged the writes of *its own connection*: on
    another connection of the pool it would wait for that connection's last write, which
    may be long done, and answer at once whatever became of this one. Both go down one
    connection here (a pipeline without MULTI: the script runs, then WAIT)."""
    async with redis.pipeline(transaction=False) as pipe:
        await script(keys=keys, args=args, client=pipe)
        pipe.wait(replicas, timeout_ms)
        result, acked = await pipe.execute()
    return result, int(acked)
