"""Background tasks: stopping them for good."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def cancel_tasks(tasks: Sequence[asyncio.Future[Any]], timeout: float = 10.0) -> None:
    """Cancel background loops and wait for them. redis-py can swallow a cancellation
    that lands inside a command, so cancel again until each task is really done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = [t for t in tasks if not t.done()]
        if not pending or loop.time() > deadline:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
