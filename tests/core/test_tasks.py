"""`pause` and `honour_cancel`: a loop whose cancellation was swallowed by an awaited call
still ends at its next pause or check; SIGUSR1 says what every task waits on."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import pytest

from sortie_core.tasks import dump_tasks_on_signal, honour_cancel, pause


async def _honour_cancel_only() -> None:
    honour_cancel()


async def _swallowing_loop(iterations: list[int], check: Callable[[], Awaitable[None]]) -> None:
    """What an awaited Redis command does on Python 3.11 when the cancellation lands as it
    completes (asyncio.wait_for returns the result): the CancelledError never surfaces.
    `check` is what the loop does next: a pause, or (the agent wake-up listener, which goes
    round on an awaited read alone) honour_cancel."""
    while True:
        iterations.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass
        await check()


@pytest.mark.parametrize(
    "check", [lambda: pause(0.01), _honour_cancel_only], ids=["pause", "honour_cancel"]
)
async def test_the_cancellation_an_awaited_call_swallowed_ends_the_loop(
    check: Callable[[], Awaitable[None]],
) -> None:
    iterations: list[int] = []
    task = asyncio.create_task(_swallowing_loop(iterations, check))
    await asyncio.sleep(0.005)  # inside the sleep that swallows
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done == {task} and task.cancelled()
    assert len(iterations) == 1  # it did not go round again


async def test_pause_sleeps_when_nothing_was_cancelled() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(0.05)
    assert loop.time() - started >= 0.045


async def test_sigusr1_logs_every_task_and_where_it_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stuck_on_purpose() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(stuck_on_purpose(), name="the-stuck-one")
    loop = asyncio.get_running_loop()
    dump_tasks_on_signal()
    try:
        with caplog.at_level(logging.WARNING, logger="sortie_core.tasks"):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if caplog.records:
                    break
        [record] = caplog.records
        text = record.getMessage()
        assert "task the-stuck-one" in text
        assert "stuck_on_purpose" in text and "Event().wait()" in text
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        task.cancel()
