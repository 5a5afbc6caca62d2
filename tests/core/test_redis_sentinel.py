"""Redis Sentinel and replica durability (issue 19, item 1), on real redis-servers: the
client and broker of a process reach the master through the sentinels and follow a
failover; `run_then_wait` counts the replicas that hold the script's own write."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from sortie_core.redis_conn import (
    BlockingSentinelPool,
    master_options,
    run_then_wait,
    sentinel_options,
)
from sortie_core.runtime import make_broker, redis_client
from sortie_core.settings import ServiceSettings, SettingsError, read_settings
from sortie_testkit.redis_sentinel import SentinelGroup, replicated_pair
from sortie_testkit.redis_server import RedisServer

SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    g = SentinelGroup().start()
    yield g
    g.cleanup()


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with replicated_pair() as servers:
        yield servers


def _settings(group: SentinelGroup) -> ServiceSettings:
    return ServiceSettings(
        redis_url=SecretStr(group.url),
        redis_sentinels=group.addresses,
        redis_sentinel_master="sortie",
    )


async def _retry(what: Callable[[], Awaitable[object]], attempts: int = 100) -> object:
    """While the sentinels elect a new master, commands fail: try again."""
    for _ in range(attempts):
        try:
            return await what()
        except RedisConnectionError:
            await asyncio.sleep(0.1)
    raise AssertionError("never succeeded")


async def test_the_client_and_the_broker_follow_a_failover(group: SentinelGroup) -> None:
    settings = _settings(group)
    redis = redis_client(settings)
    broker = make_broker(settings)
    await broker.connect()
    stream = broker.config.connection.client
    try:
        assert isinstance(redis.connection_pool, BlockingSentinelPool)
        await redis.set("before", "1")
        await stream.xadd("s", {"n": "1"})
        old = group.kill9_primary()
        new = await asyncio.to_thread(group.wait_failover, old)
        await _retry(lambda: redis.set("after", "2"))
        await _retry(lambda: stream.xadd("s", {"n": "2"}))
        # Both wrote to the new master, without being rebuilt.
        assert redis.connection_pool.master_address == ("127.0.0.1", new)  # type: ignore[attr-defined]
        direct = Redis(port=new)
        assert await direct.get("after") == b"2"
        assert await direct.xlen("s") >= 1
        last = await direct.xrevrange("s", count=1)
        assert last and last[0][1] == {b"n": b"2"}
        await direct.aclose()
    finally:
        await redis.aclose()
        await broker.stop()


async def test_wait_counts_the_replicas_of_the_scripts_own_write(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    redis = Redis.from_url(primary.url)
    script = redis.register_script(SCRIPT)
    try:
        result, acked = await run_then_wait(
            redis, script, ["k"], ["1"], replicas=1, timeout_ms=2000
        )
        assert (result, acked) == (1, 1)
        # A stalled replica: the write is not durable, and WAIT says so.
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            result, acked = await run_then_wait(
                redis, script, ["k"], ["2"], replicas=1, timeout_ms=300
            )
            assert (result, acked) == (1, 0)
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
    finally:
        await redis.aclose()


def test_sentinel_settings_come_from_the_shared_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "sentinel-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SORTIE_REDIS_SENTINELS", "10.0.0.1:26379, [::1]:26380")
    monkeypatch.setenv("SORTIE_REDIS_SENTINEL_MASTER", "school")
    monkeypatch.setenv("SORTIE_REDIS_SENTINEL_PASSWORD_FILE", str(secret))
    settings = read_settings(ServiceSettings)
    assert settings.redis_sentinel_master == "school"
    assert settings.redis_sentinel_password is not None
    assert settings.redis_sentinel_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("SORTIE_REDIS_SENTINELS", "10.0.0.1")
    with pytest.raises(SettingsError) as refused:
        read_settings(ServiceSettings)
    assert "SORTIE_REDIS_SENTINELS" in str(refused.value) and "host:port" in str(refused.value)


def test_tls_keeps_the_sentinel_managed_connection() -> None:
    """A `rediss://` URL: TLS to the master and, unless told otherwise, to the sentinels,
    with the CA of the settings; the connection class stays sentinel-managed (a plain
    TLS connection would stay on one host and never follow a failover)."""
    settings = ServiceSettings(
        redis_url=SecretStr("rediss://orchestrator:pw@ignored:1/2"),
        redis_ca_path="/etc/ca.pem",
        redis_sentinels="10.0.0.1:26379",
        redis_sentinel_password=SecretStr("sp"),
    )
    master = master_options(settings)
    assert master["connection_class"] is SentinelManagedSSLConnection
    assert (master["username"], master["password"], master["db"]) == ("orchestrator", "pw", 2)
    assert master["ssl_ca_certs"] == "/etc/ca.pem" and "host" not in master
    sentinels = sentinel_options(settings)
    assert sentinels["ssl"] is True and sentinels["password"] == "sp"
    plain = settings.model_copy(update={"redis_sentinel_tls": False})
    assert "ssl" not in sentinel_options(plain)
    assert (
        master_options(settings.model_copy(update={"redis_url": SecretStr("redis://h/0")}))[
            "connection_class"
        ]
        is SentinelManagedConnection
    )
