"""How many commands the worker handles at once, from Graph's write quota and latency.

Little's law: the users in flight are the rate they are served at times the time each
spends. The rate is what the app registrations may write (settings); the time, what Graph
took in the last run (kept in Redis by every replica under
`sortie_core.services.graph_latency_key`), else
`SORTIE_M365_GRAPH_LATENCY_S`. A concurrency set explicitly (SORTIE_M365_CONCURRENCY) wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sortie_core.runtime import redis_client
from sortie_core.services import graph_latency_key

from .quota import concurrency_for
from .settings import M365Settings

log = logging.getLogger(__name__)


async def measured_latency(settings: M365Settings) -> float | None:
    redis = redis_client(settings)
    try:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                raw = await redis.get(graph_latency_key(settings.tenant_key))
                return float(raw) if raw else None
        return None
    finally:
        await redis.aclose()


async def sized(settings: M365Settings) -> M365Settings:
    if "concurrency" in settings.model_fields_set:
        return settings
    latency = await measured_latency(settings)
    if latency is None or latency <= 0:
        return settings
    concurrency = concurrency_for(settings.writes_per_s, latency)
    log.info(
        "%d commands at once: %.1f writes/s, Graph latency %.0f ms (measured)",
        concurrency,
        settings.writes_per_s,
        latency * 1000,
    )
    return settings.model_copy(update={"concurrency": concurrency})
