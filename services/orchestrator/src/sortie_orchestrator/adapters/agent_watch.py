"""Where the orchestrator hears from workstation agents: each agent's own Pub/Sub channel
and, on a timer, every agent's presence record.

An agent writes no shared stream (see `sortie_core.acl`): it appends to its own streams,
then publishes on `sortie:agent-wake:<host>`. A wake-up only makes the orchestrator
re-read what that host alone can write (its presence record, its results stream), and
wake-ups of one host are coalesced, so a flood from a compromised agent costs re-reads of
its own keys and delays nobody else. Pub/Sub is not durable: a wake-up missed while this
replica was disconnected is made good by `PresenceIndex.sweep` every `presence_sweep_s`
(at most one agent heartbeat) and by the periodic re-drain of results.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from sortie_core import streams
from sortie_core.tasks import honour_cancel, pause
from sortie_orchestrator.adapters.agent_results import AgentResults
from sortie_orchestrator.adapters.presence import PresenceIndex

log = logging.getLogger(__name__)

# Hosts re-read at once after wake-ups; more wait for a free slot.
CONCURRENCY = 16


class AgentWatch:
    def __init__(
        self, redis: Redis, presence: PresenceIndex, results: AgentResults, sweep_s: float
    ) -> None:
        self.redis = redis
        self.presence = presence
        self.results = results
        self.sweep_s = sweep_s
        self._queued: dict[str, set[str]] = {}
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Follow every agent's wake-up channel until cancelled, re-subscribing after a
        lost connection (the sweep covers what was published meanwhile)."""
        while True:
            pubsub: PubSub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{streams.AGENT_WAKE_PREFIX}*")
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    honour_cancel()  # redis-py's reads can swallow it (tasks.pause)
                    if message is not None and message.get("type") == "pmessage":
                        self._wake(_s(message["channel"]), _s(message.get("data") or b""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("agent wake-up channel lost (%s); re-subscribing", exc)
                await pause(1.0)
            finally:
                await pubsub.aclose()

    def _wake(self, channel: str, what: str) -> None:
        host = streams.host_of_wake_channel(channel)
        if host is None:
            return
        kinds = {what} if what in ("presence", "results") else {"presence", "results"}
        queued = self._queued.get(host)
        if queued is not None:
            queued |= kinds  # a re-read of this host is already waiting: it covers this one
            return
        self._queued[host] = set(kinds)
        task = asyncio.create_task(self._reread(host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reread(self, host: str) -> None:
        async with self._sem:
            kinds = self._queued.pop(host, set())
            try:
                if "presence" in kinds:
                    await self.presence.refresh(host)
                if "results" in kinds:
                    await self.results.drain(host)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-reading agent %s failed; the next sweep retries", host)

    async def sweep_loop(self) -> None:
        while True:
            try:
                changed = await self.presence.sweep()
                if changed:
                    log.info("presence sweep re-indexed %d host(s)", changed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence sweep failed")
            await pause(self.sweep_s)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
