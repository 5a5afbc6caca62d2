"""The one settings builder of tests and benches: any service's settings over a real
redis-server, with polling, claiming and back-off short enough for a test (the
orchestrator's own tokens and timeouts are in `sortie_testkit.orchestrator`)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sortie_core.settings import ServiceSettings
from sortie_testkit.redis_server import RedisServer

S = TypeVar("S", bound=ServiceSettings)

__all__ = ["fast"]


def fast(settings_cls: type[S], redis: RedisServer | str, **overrides: Any) -> S:
    """`settings_cls` over `redis` (a started server or its URL): quick polling and
    claiming, short back-off (fields a service does not have are ignored); `overrides`
    win."""
    values: dict[str, Any] = {
        "redis_url": redis.url if isinstance(redis, RedisServer) else redis,
        "consumer_name": f"test-{uuid.uuid4().hex[:8]}",
        "polling_interval_ms": 20,
        "claim_interval_ms": 100,
        "claim_idle_ms": 500,
        "step_backoff_base_s": 0.01,
        "step_backoff_max_s": 0.05,
    }
    return settings_cls(**(values | overrides))
