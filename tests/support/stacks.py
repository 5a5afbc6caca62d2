"""The whole stack as `sortie up` runs it, for end-to-end tests: one way to start and
stop it (`running_stack`, behind the session fixture `whole_stack` of tests/conftest.py),
what a stack runs with (`StackVariant`), and one way to wait for a request to reach a
status."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sortie_cli.stack import Stack
from sortie_testkit.waiting import wait_until


@dataclass(frozen=True, eq=False)
class StackVariant:
    """What a whole stack runs with: extra environment and `Stack` fields. A module
    selects its variant with `use_stack(variant)`; the modules that select the same
    variant object share one stack. Each module that changes the demo users' state (most
    do: Alice is logged out, offboarded, restored) has a variant of its own."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return self.name


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
