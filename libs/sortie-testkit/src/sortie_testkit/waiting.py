"""The one way tests and benches await a condition: poll it until it holds or the time is
up, then fail with what was last seen. Never a fixed sleep where a condition can be
awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["TimedOut", "wait_until", "wait_until_async"]


class TimedOut(AssertionError):
    """The condition did not hold within the timeout (an AssertionError: a test failure)."""


def _message(what: str, timeout: float, last: object) -> str:
    return f"{what or 'the condition'} did not hold within {timeout:g} s (last: {last!r})"


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """The first truthy value of `condition()`, polled every `interval` seconds; raises
    `TimedOut` after `timeout` seconds (the condition is always tried at least once)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(_message(what, timeout, value))
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """`wait_until` in an event loop: `condition` may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise TimedOut(_message(what, timeout, value))
        await asyncio.sleep(interval)
