"""The whole stack as `sortie up` runs it, for end-to-end tests: one way to start and
stop it (`running_stack`, behind the session fixture `whole_stack` of tests/conftest.py),
what a stack runs with (`StackVariant`: extra environment, `Stack` fields, or a local Redis
Cluster of three primaries instead of its own redis-server), and one way to wait for a
request to reach a status."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.cluster import RedisCluster

from sortie_cli.stack import Stack
from sortie_testkit.redis_cluster import RedisClusterGroup
from sortie_testkit.waiting import wait_until

SINGLE_REDIS = "single_redis"


@dataclass(frozen=True, eq=False)
class StackVariant:
    """What a whole stack runs with: extra environment and `Stack` fields. A module
    selects its variant with `use_stack(variant)`; the modules that select the same
    variant object share one stack. Each module that changes the demo users' state (most
    do: Alice is logged out, offboarded, restored) has a variant of its own."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    # Three primaries started for the stack (RedisClusterGroup), SORTIE_REDIS_CLUSTER=1.
    cluster: bool = False

    def __repr__(self) -> str:
        return self.name


def single_redis(reason: str) -> pytest.MarkDecorator:
    """This test runs on the module's single-Redis variants only (`reason`: why it cannot
    apply to a Cluster); tests/conftest.py deselects it from the Cluster variants."""
    return pytest.mark.single_redis(reason)


@contextmanager
def variant_stack(workdir: Path, variant: StackVariant) -> Iterator[Stack]:
    """`running_stack` as `variant` says, on a Cluster of its own when it asks for one."""
    with ExitStack() as owned:
        env = dict(variant.env)
        if variant.cluster:
            group = RedisClusterGroup().start()
            owned.callback(group.cleanup)
            env = {**group.env(), **env}
        yield owned.enter_context(running_stack(workdir, env, **variant.fields))


def on_cluster(stack: Stack) -> bool:
    return stack.base_env.get("SORTIE_REDIS_CLUSTER") == "1"


def stack_redis(stack: Stack) -> Any:
    """A client of the stack's Redis: `RedisCluster` on a Cluster (every key routed to
    its slot's primary, SCAN over every primary), `Redis` otherwise."""
    if on_cluster(stack):
        return RedisCluster.from_url(stack.urls["redis"])
    return Redis.from_url(stack.urls["redis"])


def use_stack(*variants: StackVariant) -> pytest.MarkDecorator:
    """The module's tests run against `whole_stack` started as `variants` (each one)."""
    return pytest.mark.parametrize(
        "whole_stack", variants, indirect=True, ids=[v.name for v in variants], scope="session"
    )


@contextmanager
def running_stack(
    workdir: Path, env: dict[str, str] | None = None, **fields: Any
) -> Iterator[Stack]:
    """A planned and started stack (its own redis-server and simulators), stopped after."""
    stack = Stack(
        workdir=workdir, api_port=0, base_env={"PATH": "/usr/bin:/bin", **(env or {})}, **fields
    )
    stack.plan()
    try:
        stack.start(timeout=90)
        yield stack
    finally:
        stack.stop()


def wait_status(
    client: httpx.Client, rid: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    """The request's view once its status is one of `statuses`."""
    return wait_view(client, rid, lambda view: view["status"] in statuses, timeout)


def wait_view(
    client: httpx.Client, rid: str, holds: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """The request's view once `holds(view)`."""

    def view() -> dict[str, Any] | None:
        current: dict[str, Any] = client.get(f"/v1/requests/{rid}").json()
        return current if holds(current) else None

    found = wait_until(view, timeout, 0.1, f"request {rid}: the condition")
    assert found is not None
    return found
