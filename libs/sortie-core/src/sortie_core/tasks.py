"""Background tasks: stopping them for good, and saying what each one waits on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


async def pause(delay: float) -> None:
    """`asyncio.sleep(delay)` for a loop between iterations, which first honours a
    cancellation an awaited call swallowed.

    On Python 3.11, `asyncio.wait_for` returns the inner result when the task is
    cancelled as that inner call completes (CPython gh-86296, fixed in 3.12), and
    redis-py wraps every socket write in `wait_for`: the `CancelledError` never
    surfaces, but the task still counts the request (`Task.cancelling()`). A loop
    that only sleeps afterwards would then run forever."""
    honour_cancel()
    await asyncio.sleep(delay)


def honour_cancel() -> None:
    """Raise the cancellation of the current task that an awaited call swallowed (see
    `pause`): for a loop that goes round without sleeping."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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


def describe_tasks() -> str:
    """Every task of the running loop and where each one waits (innermost frame last)."""
    lines: list[str] = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()}: {task.get_coro()!r}")
        out = io.StringIO()
        task.print_stack(limit=12, file=out)
        lines.extend(f"  {line}" for line in out.getvalue().splitlines()[1:])
    return "\n".join(lines)


def dump_tasks_on_signal(sig: int = signal.SIGUSR1) -> None:
    """`kill -USR1 <pid>` logs every task and what it awaits: what an operator (or a test)
    asks a process that seems stuck. Call from inside the running loop."""
    loop = asyncio.get_running_loop()
    # Not on a loop outside the main thread (tests run the app in one), nor on Windows.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(sig, lambda: log.warning("tasks:\n%s", describe_tasks()))
