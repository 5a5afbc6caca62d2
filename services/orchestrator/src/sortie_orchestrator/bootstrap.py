"""Composition root: settings -> Redis, broker, store and adapters, handlers, subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import services, streams
from sortie_core.broker import Consumers, Delivery, Subscription
from sortie_core.errors import RefusedError
from sortie_core.events import RevocationCompleted, SsoLogoutCompleted
from sortie_core.outbox import Relay
from sortie_core.redis_cluster import is_cluster
from sortie_core.runtime import make_broker, make_consumers, redis_client
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.agent_results import AgentResults
from sortie_orchestrator.adapters.agent_watch import AgentWatch
from sortie_orchestrator.adapters.console_store import ConsoleStore
from sortie_orchestrator.adapters.logout_keys import LogoutKeys
from sortie_orchestrator.adapters.m365_queue import M365Queue
from sortie_orchestrator.adapters.presence import PresenceIndex
from sortie_orchestrator.adapters.preview_ask import WorkerPreviews
from sortie_orchestrator.adapters.saga_cluster import ClusterSagaIndex, ClusterSagaStore
from sortie_orchestrator.adapters.saga_index import SagaIndex
from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.adapters.scim_store import scim_stores
from sortie_orchestrator.adapters.tap_vault import TapVault
from sortie_orchestrator.saga import Timeouts
from sortie_orchestrator.settings import OrchestratorSettings


@dataclass
class Wiring:
    settings: OrchestratorSettings
    redis: Redis
    broker: RedisBroker
    consumers: Consumers
    deps: handlers.Deps
    results: AgentResults
    watch: AgentWatch
    last_trim: float = float("-inf")
    # On Redis Cluster: the outbox relay (every replica runs one).
    relays: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    loops: list[asyncio.Task[None]] = field(default_factory=list)

    async def reachable(self) -> bool:
        """Whether Redis answers (readiness)."""
        try:
            await self.redis.ping()
        except Exception:
            return False
        return True


def make_deps(
    redis: Redis,
    store: SagaStore,
    timeouts: Timeouts,
    *,
    tap_ttl_s: int = 3600,
    m365_tenant_key: str = "default",
) -> handlers.Deps:
    """Every adapter the handlers and routes are handed, on one Redis client."""
    return handlers.Deps(
        store=store,
        presence=PresenceIndex(redis),
        timeouts=timeouts,
        index=(
            ClusterSagaIndex(redis, store)
            if isinstance(store, ClusterSagaStore)
            else SagaIndex(redis)
        ),
        previews=WorkerPreviews(redis),
        scim=scim_stores(redis),
        logout_keys=LogoutKeys(redis),
        vault=TapVault(redis),
        tap_ttl_s=tap_ttl_s,
        m365_queue=M365Queue(redis, m365_tenant_key),
        console=ConsoleStore(redis),
    )


def timeouts_of(settings: OrchestratorSettings) -> Timeouts:
    return Timeouts(
        phase1=timedelta(seconds=settings.phase1_timeout_s),
        sso=timedelta(seconds=settings.sso_timeout_s),
        followup_base=timedelta(seconds=settings.followup_base_s),
        followup_max=timedelta(seconds=settings.followup_max_s),
        followup_horizon=timedelta(seconds=settings.followup_horizon_s),
        sso_apps_first=timedelta(seconds=settings.sso_apps_first_s),
    )


def bootstrap(settings: OrchestratorSettings) -> Wiring:
    redis = redis_client(settings)
    broker = make_broker(settings)
    store = (ClusterSagaStore if is_cluster(redis) else SagaStore)(
        redis,
        retention_s=int(settings.retention_days * 86400),
        idempotency_ttl_s=settings.idempotency_ttl_s,
        durable_replicas=settings.durable_replicas,
        durable_timeout_ms=settings.durable_timeout_ms,
    )
    deps = make_deps(
        redis,
        store,
        timeouts_of(settings),
        tap_ttl_s=settings.tap_ttl_s,
        m365_tenant_key=settings.m365_tenant_key,
    )

    async def revocation(event: RevocationCompleted, delivery: Delivery) -> None:
        if services.host_of(event.service) is not None:
            # Agents report only on their own results stream: this one is forged.
            raise RefusedError(
                f"service {event.service!r} on the shared stream", code="forged_report"
            )
        await handlers.on_revocation(deps, event, delivery)

    async def sso_completed(event: SsoLogoutCompleted, delivery: Delivery) -> None:
        await handlers.on_sso_completed(deps, event, delivery)

    group = streams.GROUP_ORCHESTRATOR
    # Reports need no `event_id` mark: the saga ignores a service already reported, and
    # its compare-and-set acknowledges the entry (two round trips per report).
    subscriptions = [
        Subscription(
            streams.REVOCATION_COMPLETED, group, revocation, (RevocationCompleted,), dedupe=False
        ),
        Subscription(
            streams.SSO_LOGOUT_COMPLETED, group, sso_completed, (SsoLogoutCompleted,), dedupe=False
        ),
    ]
    consumers = make_consumers(settings, "orchestrator", broker, redis, subscriptions)
    results = AgentResults(deps, consumers, claim_idle_ms=settings.claim_idle_ms)
    watch = AgentWatch(redis, deps.presence, results, settings.presence_sweep_s)
    wiring = Wiring(settings, redis, broker, consumers, deps, results, watch)
    if is_cluster(redis):
        relay = Relay(
            redis,
            consumers.consumer,
            claim_idle_ms=settings.claim_idle_ms,
            durable_replicas=settings.durable_replicas,
            durable_timeout_ms=settings.durable_timeout_ms,
        )
        wiring.relays.append(relay.run)
    return wiring
