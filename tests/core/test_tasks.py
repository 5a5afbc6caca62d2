"""`pause`: a loop whose cancellation was swallowed by an awaited call still ends at its
next pause."""

from __future__ import annotations

import asyncio

from sortie_core.tasks import pause


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


async def test_pause_sleeps_when_nothing_was_cancelled() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(0.05)
    assert loop.time() - started >= 0.045
