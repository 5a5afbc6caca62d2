"""`pause` and `honour_cancel`: a loop whose cancellation was swallowed by an awaited call
still ends at its next pause or check; SIGUSR1 says what every task waits on."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from sortie_core.tasks import dump_tasks_on_signal, honour_cancel, pause


async def _swallowing_loop(iterations: list[int]) -> None:
    """What an awaited Redis command does on Python 3.11 when the cancellation lands as it
    completes (asyncio.wait_for returns the result): the CancelledError never surfaces."""
    while True:
        iterations.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass
        await pause(0.01)


async def test_pause_raises_the_cancellation_an_awaited_call_swallowed() -> None:
    iterations: list[int] = []
    task = asyncio.create_task(_swallowing_loop(iterations))
    await asyncio.sleep(0.005)  # inside the sleep that swallows
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done == {task} and task.cancelled()
    assert len(iterations) == 1  # it did not go round again


async def test_honour_cancel_ends_a_loop_that_never_pauses() -> None:
    """The agent wake-up listener's shape: it goes round on an awaited read alone."""
    iterations: list[int] = []

    async def reading_loop() -> None:
        while True:
            iterations.append(1)
            try:
                await asyncio.sleep(0.01)  # the read that swallows the cancellation
            except asyncio.CancelledError:
                pass
            honour_cancel()

    task = asyncio.create_task(reading_loop())
    await asyncio.sleep(0.005)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done == {task} and task.cancelled()
    assert len(iterations) == 1


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
