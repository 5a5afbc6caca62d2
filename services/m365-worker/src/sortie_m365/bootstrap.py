"""Composition root: settings -> Graph adapter -> subscriptions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, Subscription
from sortie_core.events import (
    LogoutRequested,
    OffboardRequested,
    PreviewRequested,
    ReversalRequested,
    RevocationCompleted,
)
from sortie_core.ratelimit import Bucket, SpreadLimiter
from sortie_core.runtime import WorkerParts
from sortie_core.steps import RetryPolicy
from sortie_core.subscription import command_subscription

from . import handlers, reversal
from . import identity as identity_
from .adapters import M365Directory
from .adapters.credentials import credential_from
from .adapters.exchange import ExchangeMailboxProtocols
from .adapters.exchange_leaver import ExchangeLeaver
from .adapters.graph_http import graph_client
from .adapters.graph_leaver import GraphLeaver
from .adapters.graph_sdk import GraphSdkDirectory, MailboxProtocols
from .identity_cache import IdentityCache
from .leaver import LeaverOps
from .quota import WriteQueue
from .settings import M365Settings
from .tap import TapConfig

SERVICE = "m365-worker"

Build = Callable[[RedisBroker, Redis], Awaitable[WorkerParts]]


def identity_config(settings: M365Settings) -> handlers.IdentityConfig:
    cache = None
    if settings.identity_cache_size:
        cache = IdentityCache(settings.identity_cache_size, settings.identity_cache_ttl_s)
    return handlers.IdentityConfig(
        lookups=settings.lookups,
        skew=timedelta(seconds=settings.verify_clock_skew_s),
        cache=cache,
    )


def write_queue(settings: M365Settings, redis: Redis) -> WriteQueue:
    """The tenant's write quota over its app registrations, shared through Redis."""
    headroom = settings.quota_headroom
    app = Bucket.for_limit(settings.app_writes_limit, settings.app_writes_window_s, headroom)
    tenant = Bucket.for_limit(
        settings.tenant_writes_limit, settings.tenant_writes_window_s, headroom
    )
    if settings.tenant_writes_per_s:
        app = tenant = Bucket.for_limit(settings.tenant_writes_per_s, 1.0, headroom)
    names = [r.client_id for r in settings.app_registrations] or [settings.client_id or "app"]
    tenant_tag = settings.tenant_key
    if settings.redis_cluster:  # one script takes from every bucket: one slot for them
        tenant_tag = f"{{{tenant_tag}}}"
    prefix = f"sortie:ratelimit:graph:{tenant_tag}"
    limiter = SpreadLimiter(
        redis, prefix, tuple(f"{prefix}:app:{name}" for name in names), tenant, app
    )
    return WriteQueue(limiter, redis, settings.tenant_key)


def graph_directory(settings: M365Settings, redis: Redis) -> GraphSdkDirectory:
    """msgraph-sdk with the configured credential, the tenant's shared write budget and,
    when configured, Exchange Online for mailbox protocols."""
    credentials = [r.credential(settings.tenant_id) for r in settings.app_registrations]
    credentials = credentials or [credential_from(settings)]
    client = graph_client(
        settings.graph_url,
        credentials,
        scope=settings.graph_scope,
        timeout_s=settings.graph_timeout_s,
        connections=settings.graph_concurrency or settings.concurrency,
    )
    mailbox: MailboxProtocols | None = None
    if settings.exchange_url:
        mailbox = ExchangeMailboxProtocols(
            settings.exchange_url,
            settings.tenant_id or settings.tenant_key,
            credentials[0],
            scope=settings.exchange_scope,
            timeout_s=settings.graph_timeout_s,
        )
    return GraphSdkDirectory(
        client,
        credential=credentials,
        limiter=write_queue(settings, redis),
        concurrency=settings.graph_concurrency or settings.concurrency,
        mailbox=mailbox,
        batch_linger_s=settings.graph_batch_linger_ms / 1000 if settings.graph_batching else None,
    )


def leaver_ops(directory: M365Directory) -> LeaverOps:
    """The leaver actions' adapters, on msgraph-sdk only (a fake directory: none)."""
    if not isinstance(directory, GraphSdkDirectory):
        return LeaverOps()
    mailbox = directory.mailbox
    return LeaverOps(GraphLeaver(directory), ExchangeLeaver(mailbox) if mailbox else None)


def subscriptions(
    m365: M365Directory, settings: M365Settings, policy: RetryPolicy
) -> list[Subscription]:
    """One subscription per command the worker takes."""
    identity = identity_config(settings)
    ops = leaver_ops(m365)
    tap = TapConfig(settings.tap_lifetime_minutes, settings.tap_usable_once)

    async def on_logout(event: LogoutRequested, _: Delivery) -> RevocationCompleted | None:
        return await handlers.handle_logout(event, directory=m365, policy=policy, identity=identity)

    async def on_offboard(event: OffboardRequested, _: Delivery) -> RevocationCompleted | None:
        return await handlers.handle_offboard(
            event,
            directory=m365,
            policy=policy,
            identity=identity,
            password_length=settings.password_length,
            ops=ops,
        )

    async def on_reversal(event: ReversalRequested, _: Delivery) -> RevocationCompleted | None:
        return await reversal.handle_reversal(
            event, directory=m365, policy=policy, identity=identity, ops=ops, tap=tap
        )

    async def on_preview(event: PreviewRequested, _: Delivery) -> RevocationCompleted | None:
        return await identity_.preview(event, identity.lookups, m365, policy)

    group, completed = streams.GROUP_M365, streams.REVOCATION_COMPLETED
    give_up = handlers.handle_deadlettered
    return [
        command_subscription(
            streams.LOGOUT_REQUESTED, group, on_logout, LogoutRequested, completed, give_up
        ),
        command_subscription(
            streams.OFFBOARD_REQUESTED, group, on_offboard, OffboardRequested, completed, give_up
        ),
        command_subscription(
            streams.REVERSAL_REQUESTED, group, on_reversal, ReversalRequested, completed, give_up
        ),
        # A preview has no report to publish when it is given up.
        command_subscription(
            streams.PREVIEW_REQUESTED, group, on_preview, PreviewRequested, streams.PREVIEW_ANSWERED
        ),
    ]


def make_build(settings: M365Settings, directory: M365Directory | None = None) -> Build:
    """`directory` replaces the Graph adapter (tests pass a fake)."""

    async def build(broker: RedisBroker, redis: Redis) -> WorkerParts:
        m365 = directory or graph_directory(settings, redis)
        policy = RetryPolicy.of(settings)
        return WorkerParts(
            subscriptions=subscriptions(m365, settings, policy), on_stop=[m365.aclose]
        )

    return build
