"""Every process's shared Redis client gives up on a reply that never comes (a peer that
stopped answering without closing: a failover, a partition) after its read timeout,
instead of awaiting it forever; the Cluster's relay pass is bounded too, and no failure of
a pass (its discovery included) ends the relay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeout

from sortie_core import outbox, runtime
from sortie_core.outbox import Relay, new_request_id, outbox_key
from sortie_core.settings import ServiceSettings
from sortie_testkit.settings import fast


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()


@pytest.mark.parametrize("cluster", [False, True])
async def test_a_reply_that_never_comes_times_out(
    silent_url: str, cluster: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "READ_TIMEOUT_MARGIN_S", 0.3)
    env = {"redis_cluster": True} if cluster else {}
    settings = fast(ServiceSettings, silent_url, polling_interval_ms=1, **env)
    assert runtime.read_timeout_s(settings) == pytest.approx(0.301)
    client: Any = runtime.redis_client(settings)
    started = time.monotonic()
    # A Cluster client meets it while it learns the layout, and says which node.
    expected = RedisClusterException if cluster else RedisTimeout
    with pytest.raises(expected, match="Timeout reading"):
        await asyncio.wait_for(client.ping(), 10)
    assert time.monotonic() - started < 5
    await client.aclose()


async def _moves_its_entry_despite(cluster: RedisCluster, name: str, sabotage: str) -> int:
    """Run a relay whose first call of its method `sabotage` goes wrong (as
    `_FIRST_CALL_WRONG` says) until one outbox entry reached its stream; returns how many
    times that method was called."""
    rid = new_request_id()
    stream = f"{name}-{rid}"
    await cluster.xadd(outbox_key(rid), {"stream": stream, "data": "x"})
    relay = Relay(cluster, name)
    real = getattr(relay, sabotage)
    calls: list[int] = []

    async def first_call_wrong() -> Any:
        calls.append(1)
        if len(calls) == 1:
            await _FIRST_CALL_WRONG[sabotage]()
        return await real()

    setattr(relay, sabotage, first_call_wrong)
    task = asyncio.create_task(relay.run(poll_s=0.01))
    try:
        deadline = time.monotonic() + 5
        while await cluster.xlen(stream) == 0:
            assert not task.done(), task
            assert time.monotonic() < deadline, f"the relay never got past its {sabotage}"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cluster.delete(stream)
    return len(calls)


async def _hang() -> None:
    await asyncio.Event().wait()  # a reply that never comes


async def _connection_refused() -> None:
    # A failover: the node being scanned just died.
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


_FIRST_CALL_WRONG = {"relay_once": _hang, "discover": _connection_refused}


async def test_a_relay_pass_that_hangs_is_started_again(
    cluster_client: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "PASS_TIMEOUT_S", 0.2)
    assert await _moves_its_entry_despite(cluster_client, "relay-hang", "relay_once") >= 2


async def test_a_discovery_that_fails_does_not_end_the_relay(
    cluster_client: RedisCluster,
) -> None:
    assert await _moves_its_entry_despite(cluster_client, "relay-discovery", "discover") >= 2
