"""Composition root: settings -> session backend -> one `Agent` -> its subscription."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core.runtime import WorkerParts
from sortie_core.steps import RetryPolicy

from .adapters import SessionBackend
from .adapters.simulated import SimulatedSessions
from .adapters.system import LinuxSessions, MultiPointSessions, WindowsSessions
from .agent import Agent
from .settings import AgentSettings

SERVICE = "workstation-agent"

Build = Callable[[RedisBroker, Redis], Awaitable[WorkerParts]]


def detect_backend(settings: AgentSettings, platform: str = sys.platform) -> str:
    """`auto`: `windows` on Windows (MultiPoint hosts set `multipoint` explicitly),
    `linux` elsewhere."""
    if settings.backend != "auto":
        return settings.backend
    return "windows" if platform == "win32" else "linux"


def make_backend(settings: AgentSettings) -> SessionBackend:
    kind = detect_backend(settings)
    timing = {"timeout_s": settings.command_timeout_s, "browser_grace_s": settings.browser_grace_s}
    if kind == "windows":
        return WindowsSessions(
            timeout_s=settings.command_timeout_s, browser_grace_s=settings.browser_grace_s
        )
    if kind == "multipoint":
        return MultiPointSessions(powershell=settings.powershell, **timing)
    if kind == "linux":
        return LinuxSessions(**timing)
    return SimulatedSessions(settings.sim_url, settings.host, timeout_s=settings.sim_timeout_s)


def make_agent(settings: AgentSettings, redis: Redis, backend: SessionBackend) -> Agent:
    return Agent(
        host=settings.host,
        backend=backend,
        redis=redis,
        policy=RetryPolicy.of(settings),
        heartbeat_s=settings.heartbeat_s,
        session_policy=settings.policy,
        shared_station=settings.shared_station,
        group=settings.group,
    )


def make_build(settings: AgentSettings, *, backend: SessionBackend | None = None) -> Build:
    """`backend` replaces the one settings would build (tests pass a fake)."""

    async def build(broker: RedisBroker, redis: Redis) -> WorkerParts:
        agent = make_agent(settings, redis, backend or make_backend(settings))
        return WorkerParts(
            subscriptions=agent.subscriptions(), background=[agent.run], on_stop=[agent.aclose]
        )

    return build
