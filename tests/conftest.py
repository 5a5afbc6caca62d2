"""Fixtures every folder uses: a session redis-server (and a module's own), a flushed
client of it, `serve` for in-test ASGI peers on a free port, and `whole_stack`: the one
fixture of the whole stack as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from sortie_cli.stack import Stack
from sortie_testkit.redis_cluster import RedisClusterGroup
from sortie_testkit.redis_server import RedisServer
from tests.support.stacks import SINGLE_REDIS, StackVariant, variant_stack
from tests.support.stub_http import ServedApp


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SINGLE_REDIS}(reason): not on the Cluster variants of `whole_stack`"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the `single_redis` tests parametrized with a Cluster variant."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("whole_stack") if callspec else None
        on_cluster = isinstance(variant, StackVariant) and variant.cluster
        (drop if on_cluster and item.get_closest_marker(SINGLE_REDIS) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server of the test module's own (e.g. under its live orchestrator)."""
    srv = RedisServer().start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterGroup]:
    """A Redis Cluster of three primaries of the test module's own."""
    group = RedisClusterGroup().start()
    yield group
    group.cleanup()


@pytest.fixture
async def cluster_client(cluster: RedisClusterGroup) -> AsyncIterator[RedisCluster]:
    """A client of `cluster`, emptied first."""
    client = RedisCluster.from_url(cluster.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """`serve(asgi_app)` runs the app on a free port of 127.0.0.1 for this test; returns
    its base URL."""
    started: list[ServedApp] = []

    def _serve(app: Any) -> str:
        started.append(ServedApp(app).start())
        return started[-1].url

    yield _serve
    for served in started:
        served.stop()


@pytest.fixture(scope="session")
def whole_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole stack as `sortie up` starts it (its own redis-server, or a Cluster of
    three primaries, and simulators), as the module's `use_stack(variant)` says. One
    stack runs at a time: pytest stops it when the next tests need another variant."""
    variant: StackVariant = getattr(request, "param", None) or StackVariant("default")
    workdir = tmp_path_factory.mktemp(f"stack-{variant.name}")
    with variant_stack(workdir, variant) as stack:
        yield stack


@pytest.fixture
def stack(whole_stack: Stack) -> Stack:
    """`whole_stack`, by the name the end-to-end tests use."""
    return whole_stack
