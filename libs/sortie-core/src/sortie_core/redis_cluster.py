"""Redis Cluster: the client and the broker of a process when `SORTIE_REDIS_CLUSTER=1`
(runtime.py asks here, after Sentinel), and the few helpers that let one code path run on
one Redis and on a Cluster (docs/high-availability.md, "Sentinel or Cluster").

On a Cluster a script or a MULTI may only touch keys of one slot (CROSSSLOT otherwise);
redis-py's `RedisCluster` (behind FastStream's `RedisClusterBroker`, FastStream 0.7.8)
routes every command to the primary of its key's slot and follows MOVED/ASK and a
failover (a replica promoted) by refreshing its slot map.

* `multi(redis)`: on one Redis a MULTI pipeline (one round trip, atomic, as before); on a
  Cluster the same commands one after the other, in order. Callers order their commands
  so that a crash half-way leaves a state the message path repairs: the result is
  published first and the entry acknowledged last, so a crash in between means one
  more delivery, and a duplicate report, which the orchestrator de-duplicates by step.
* `run_then_wait_on_slot`: a script and `WAIT` on one connection of the slot's primary,
  the Cluster form of `redis_conn.run_then_wait` (WAIT counts its own connection's writes).
"""

from __future__ import annotations

import re
from typing import Any

from faststream.redis import RedisClusterBroker
from faststream.redis.configs import state as fs_state
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .settings import ServiceSettings

_STALE = re.compile(r"WAIT cannot be used with replica|MOVED|READONLY")

# What a RedisCluster connection refuses (one db, its own connection classes).
_NOT_FOR_CLUSTER = ("db", "connection_class", "host", "port", "security")


def _lost_connection(exc: Exception) -> bool:
    """What redis-py's async cluster client lets through when it writes to a connection
    of a node that just died (uvloop's closed transport; a writer already dropped)."""
    text = str(exc)
    return (isinstance(exc, RuntimeError) and "handler is closed" in text) or (
        isinstance(exc, AttributeError) and "writelines" in text
    )


def relearn(client: Any) -> None:
    """What redis-py does itself on a ConnectionError: learn the cluster's layout again
    before the next command (a replica may have been promoted), so that a reader does not
    keep writing to the dead node's connection (a consumer stalled for a minute so). For
    errors redis-py does not raise: a pipeline's replies with `raise_on_error=False`."""
    if isinstance(client, RedisCluster):
        client._initialize = True


def _relearn(client: RedisCluster, exc: Exception) -> RedisConnectionError:
    relearn(client)
    return RedisConnectionError(f"connection lost: {exc}")


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (RuntimeError, AttributeError) as exc:
            if _lost_connection(exc):
                raise _relearn(self.cluster_client, exc) from exc
            raise


class SortieCluster(RedisCluster):
    """`RedisCluster` whose lost connections are always `ConnectionError`s (a 503 at the
    intake, a retry elsewhere), never a bare RuntimeError or AttributeError."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (RuntimeError, AttributeError) as exc:
            if _lost_connection(exc):
                raise _relearn(self, exc) from exc
            raise

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _Pipeline(self, transaction)  # type: ignore[abstract]


def uses_cluster(settings: ServiceSettings) -> bool:
    return bool(settings.redis_cluster)


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, RedisCluster)


def _tls(settings: ServiceSettings) -> dict[str, Any]:
    if not settings.redis_url.get_secret_value().startswith("rediss://"):
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": settings.redis_ca_path,
        "ssl_certfile": settings.redis_cert_path,
        "ssl_keyfile": settings.redis_key_path,
    }


def cluster_client(settings: ServiceSettings, max_connections: int, **timeouts: float) -> Redis:
    """The process's shared client; the URL names any node (the others are discovered),
    `max_connections` is per node; `timeouts`: socket_timeout, socket_connect_timeout."""
    url = settings.redis_url.get_secret_value()
    parsed: dict[str, Any] = dict(parse_url(url))
    options: dict[str, Any] = {k: v for k, v in parsed.items() if k not in _NOT_FOR_CLUSTER}
    client = SortieCluster(
        host=str(parsed.get("host", "127.0.0.1")),
        port=int(parsed.get("port", 6379)),
        max_connections=max_connections,
        health_check_interval=30,
        **{**options, **timeouts},
        **_tls(settings),
    )
    return client  # type: ignore[return-value]


def cluster_broker(settings: ServiceSettings, **kwargs: Any) -> RedisClusterBroker:
    """FastStream's Cluster broker; `kwargs` as for `RedisBroker` (TLS from the settings:
    RedisCluster takes no SSL context)."""
    kwargs.pop("security", None)
    # FastStream 0.7.8 builds its client from the name `RedisCluster` of its connection
    # state module (faststream/redis/configs/state.py), with no way to pass a class: its
    # readers get SortieCluster's handling of a dead node's connection this way.
    fs_state.RedisCluster = SortieCluster  # type: ignore[misc]
    return RedisClusterBroker(settings.redis_url.get_secret_value(), **_tls(settings), **kwargs)


class InOrder:
    """A MULTI's interface whose commands run one after the other at `execute` (for a
    Cluster, where the keys of one MULTI lie in several slots)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> InOrder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._calls.clear()

    def __len__(self) -> int:
        return len(self._calls)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.redis, name)

        def queue(*args: Any, **kwargs: Any) -> InOrder:
            self._calls.append((method, args, kwargs))
            return self

        return queue

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [await method(*args, **kwargs) for method, args, kwargs in self._calls]


def multi(redis: Any) -> Any:
    """A MULTI pipeline on one Redis; `InOrder` on a Cluster."""
    if is_cluster(redis):
        return InOrder(redis)
    return redis.pipeline(transaction=True)


async def run_then_wait_on_slot(
    redis: Any,
    script: AsyncScript,
    keys: list[Any],
    args: list[Any],
    *,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """`script`'s result and how many replicas of its slot's primary hold its write: the
    script (EVAL: a pipeline cannot load it) and WAIT go to that primary in one batch,
    on one connection."""
    for attempt in range(2):
        node = redis.get_node_from_key(keys[0])
        try:
            async with redis.pipeline() as pipe:
                pipe.eval(script.script, len(keys), *keys, *args)
                pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
                result, acked = await pipe.execute()
            return result, int(acked)
        except ResponseError as exc:
            # The slot map was stale (a failover): the script was redirected, WAIT went
            # to the old primary, now a replica. Refreshed, both again (the callers'
            # scripts are idempotent: the second run changes nothing).
            if attempt or not _STALE.search(str(exc)):
                raise
            await redis.nodes_manager.initialize()
    raise AssertionError("unreachable")
