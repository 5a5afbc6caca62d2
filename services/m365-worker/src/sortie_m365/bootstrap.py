"""Composition root: settings -> Graph adapter -> subscriptions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, Subscription, publish
from sortie_core.events import DeadLettered, LogoutRequested, OffboardRequested
from sortie_core.runtime import WorkerParts
from sortie_core.steps import RetryPolicy

from . import handlers
from .adapters import M365Directory
from .adapters.graph_http import GraphHttpDirectory
from .settings import M365Settings

SERVICE = "m365-worker"

Build = Callable[[RedisBroker, Redis], Awaitable[WorkerParts]]


def retry_policy(settings: M365Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.step_max_attempts,
        base_s=settings.step_backoff_base_s,
        max_s=settings.step_backoff_max_s,
    )


def make_build(settings: M365Settings, directory: M365Directory | None = None) -> Build:
    """`directory` replaces the Graph adapter (tests pass a fake)."""

    async def build(broker: RedisBroker, redis: Redis) -> WorkerParts:
        m365 = directory or GraphHttpDirectory(
            settings.graph_url, settings.graph_token, timeout_s=settings.graph_timeout_s
        )
        policy = retry_policy(settings)

        async def on_logout(event: LogoutRequested, _: Delivery) -> None:
            result = await handlers.handle_logout(event, directory=m365, policy=policy)
            if result is not None:
                await publish(redis, streams.REVOCATION_COMPLETED, result)

        async def on_offboard(event: OffboardRequested, _: Delivery) -> None:
            result = await handlers.handle_offboard(
                event, directory=m365, policy=policy, password_length=settings.password_length
            )
            await publish(redis, streams.REVOCATION_COMPLETED, result)

        async def on_deadletter(event: object, record: DeadLettered) -> None:
            result = handlers.handle_deadlettered(event, record)
            if result is not None:
                await publish(redis, streams.REVOCATION_COMPLETED, result)

        return WorkerParts(
            subscriptions=[
                Subscription(
                    streams.LOGOUT_REQUESTED,
                    streams.GROUP_M365,
                    on_logout,
                    accepts=(LogoutRequested,),
                    on_deadletter=on_deadletter,
                ),
                Subscription(
                    streams.OFFBOARD_REQUESTED,
                    streams.GROUP_M365,
                    on_offboard,
                    accepts=(OffboardRequested,),
                    on_deadletter=on_deadletter,
                ),
            ],
            on_stop=[m365.aclose],
        )

    return build
