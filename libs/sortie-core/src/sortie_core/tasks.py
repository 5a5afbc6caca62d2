"""Background tasks: stopping them for good."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def pause(delay: float) -> None:
    """`asyncio.sleep(delay)` for a loop between iterations, which first honours a
    cancellation an awaited call swallowed.

    On Python 3.11, `asyncio.wait_for` returns the inner result when the task is
    cancelled as that inner call completes (CPython gh-86296, fixed in 3.12), and
    redis-py wraps every socket write in `wait_for`: the `CancelledError` never
    surfaces, but the task still counts the request (`Task.cancelling()`). A loop
    that only sleeps afterwards would then run forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(delay)


async def cancel_tasks(tasks: Sequence[asyncio.Future[Any]], timeout: float = 10.0) -> None:
    """Cancel background loops and wait for them. A cancellation that lands inside a
    Redis command can be swallowed (see `pause`), so cancel again until each task is
    really done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = [t for t in tasks if not t.done()]
        if not pending or loop.time() > deadline:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
