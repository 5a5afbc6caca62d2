"""Counting a redis-py client's round trips: each command sent alone, each pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


class Trips(list[str]):
    """Round trips (command names; `pipeline`), and what each pipeline carried."""

    def __init__(self) -> None:
        super().__init__()
        self.pipelines: list[list[str]] = []

    def commands(self) -> list[str]:
        """Every command sent, alone or in a pipeline."""
        alone = [name.upper() for name in self if name != "pipeline"]
        return alone + [name for sent in self.pipelines for name in sent]


@contextlib.contextmanager
def counted(redis: Redis) -> Iterator[Trips]:
    """Yields the round trips made on `redis` (command names; `pipeline`)."""
    trips = Trips()
    send, run = redis.execute_command, Pipeline.execute

    async def command(*args: Any, **kw: Any) -> Any:
        trips.append(str(args[0]))
        return await send(*args, **kw)

    async def pipeline(self: Pipeline, *args: Any, **kw: Any) -> Any:
        if self is not None and getattr(self, "_sortie_counted", None) is trips:
            trips.append("pipeline")
            trips.pipelines.append([str(args[0]).upper() for args, _kw in self.command_stack])
        return await run(self, *args, **kw)

    original_pipeline = redis.pipeline

    def make(*args: Any, **kw: Any) -> Pipeline:
        pipe = original_pipeline(*args, **kw)
        pipe._sortie_counted = trips  # type: ignore[attr-defined]
        return pipe

    redis.execute_command = command  # type: ignore[method-assign]
    redis.pipeline = make  # type: ignore[method-assign]
    Pipeline.execute = pipeline  # type: ignore[method-assign]
    try:
        yield trips
    finally:
        Pipeline.execute = run  # type: ignore[method-assign]
        del redis.execute_command, redis.pipeline
