"""A consumer process for the kill test: takes entries and never finishes them."""

from __future__ import annotations

import asyncio
import sys

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core.broker import Consumers, Subscription
from sortie_core.events import LogoutRequested


async def main(url: str, stream: str, group: str, consumer: str) -> None:
    redis = Redis.from_url(url)
    broker = RedisBroker(url)

    async def stuck(event: LogoutRequested, _delivery: object) -> None:
        print("holding", event.event_id, flush=True)
        await asyncio.Event().wait()  # never finishes: the test kills the process

    consumers = Consumers(
        broker=broker,
        redis=redis,
        consumer=consumer,
        subscriptions=[Subscription(stream, group, stuck, (LogoutRequested,))],
        claim_idle_ms=300,
        claim_interval_ms=100,
        polling_interval_ms=20,
    )
    await consumers.start()
    await broker.start()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
