"""A background loop of the orchestrator that ends before shutdown says why, at once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sortie_orchestrator.app import _said_if_ended


async def test_a_loop_that_ends_with_an_error_is_logged_and_a_cancelled_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1")

    async def forever() -> None:
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="sortie_orchestrator.app"):
        failed = asyncio.create_task(broken(), name="relay")
        stopped = asyncio.create_task(forever(), name="sweeper")
        for task in (failed, stopped):
            task.add_done_callback(_said_if_ended)
        await asyncio.sleep(0)
        stopped.cancel()
        await asyncio.gather(failed, stopped, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next turn
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("background loop relay ended: ConnectionError(")
