"""Workstation agents' reports, each read from the stream only that agent may write.

An agent appends its `RevocationCompleted` to `agent.results.<host>` (its Redis ACL
allows no other report stream) and wakes the orchestrator on its own channel
(`agent_watch.py`). On each wake-up, and every `REDRAIN_EVERY_S` for every known host
(a wake-up lost to a crash), the orchestrator drains that host's stream with its
consumer group. A report is applied only if it speaks for that very host; any other
entry is dead-lettered, so a compromised agent cannot report for another service or
another host, and a forged wake-up only makes the orchestrator re-read a stream that
only that host can write.

Several orchestrator replicas may drain the same host at once: the consumer group hands
each entry to one of them, a re-claimed entry may be applied twice, and
`handlers.on_revocation` is idempotent (the saga ignores a service already reported).
Each entry goes through the broker's one path (`Consumers.process`): size, delivery
limit, decoding, version, type, then the report, refused when it is for an unknown
request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import Redis

from sortie_core import services, streams
from sortie_core.broker import (
    Consumers,
    Delivery,
    Subscription,
    claim_stale,
    ensure_groups,
    is_nogroup,
)
from sortie_core.errors import RefusedError
from sortie_core.events import RevocationCompleted
from sortie_core.pipelines import pipelined
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.presence import AGENTS

log = logging.getLogger(__name__)

REDRAIN_EVERY_S = 30.0
BATCH = 100
# Bounds one drain; whatever is left is read on the next announcement or re-drain.
MAX_BATCHES = 50
# One metrics label for every host's stream, not one series per host.
METRIC_STREAM = f"{streams.AGENT_RESULTS_PREFIX}*"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AgentResults:
    def __init__(self, deps: handlers.Deps, consumers: Consumers, *, claim_idle_ms: int) -> None:
        self.deps = deps
        self.consumers = consumers
        self.redis: Redis = consumers.redis
        self.consumer = consumers.consumer
        self.claim_idle_ms = claim_idle_ms
        self.group = streams.GROUP_ORCHESTRATOR
        self.last_redrain = float("-inf")
        self._grouped: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._subs: dict[str, Subscription] = {}

    def subscription(self, host: str) -> Subscription:
        """The path's description of one host's results stream."""
        stream = streams.agent_results_stream(host)
        sub = self._subs.get(stream)
        if sub is None:
            expected = services.workstation_service(host)

            async def report(event: RevocationCompleted, delivery: Delivery) -> None:
                if event.service != expected:
                    raise RefusedError(
                        f"service {event.service!r} reported by {host}", code="forged_report"
                    )
                await handlers.on_revocation(self.deps, event, delivery)

            sub = self._subs[stream] = Subscription(
                stream,
                self.group,
                report,
                (RevocationCompleted,),
                dedupe=False,
                unexpected_reason="forged_report",
                metric_stream=METRIC_STREAM,
            )
        return sub

    async def drain(self, host: str) -> int:
        """Handle this host's stale pending entries, then its new ones; returns how many
        entries were handled (applied or dead-lettered)."""
        if not streams.valid_host(host):
            return 0
        sub = self.subscription(host)
        lock = self._locks.setdefault(sub.stream, asyncio.Lock())
        async with lock:
            if sub.stream not in self._grouped:
                await ensure_groups(self.redis, [(sub.stream, self.group)])
                self._grouped.add(sub.stream)
            try:
                return await self._claim(sub) + await self._read_new(sub)
            except Exception as exc:
                if is_nogroup(exc):
                    self._grouped.discard(sub.stream)  # Redis lost it: recreated next time
                raise

    async def _claim(self, sub: Subscription) -> int:
        handled = 0
        claimed = claim_stale(
            self.redis,
            sub.stream,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            count=BATCH * MAX_BATCHES,
        )
        async for entry_id, fields, deliveries in claimed:
            await self.consumers.process(sub, entry_id, fields, deliveries)
            handled += 1
        return handled

    async def _read_new(self, sub: Subscription) -> int:
        handled = 0
        for _ in range(MAX_BATCHES):
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {sub.stream: ">"}, count=BATCH
            )
            entries: list[Any] = reply[0][1] if reply else []  # [[stream, entries]]
            for entry_id, fields in entries:
                await self.consumers.process(sub, _s(entry_id), fields, 1)
                handled += 1
            if len(entries) < BATCH:
                break
        return handled

    async def redrain_all(self) -> int:
        """Drain every known host's results stream that holds something for this group:
        one pipelined XINFO GROUPS per 500 hosts, then a drain only where it is needed."""
        members = await self.redis.smembers(AGENTS)  # type: ignore[misc]
        hosts = sorted(_s(m) for m in members if streams.valid_host(_s(m)))
        handled = 0
        async for host, (info,) in pipelined(
            self.redis,
            hosts,
            lambda pipe, host: pipe.xinfo_groups(streams.agent_results_stream(host)),
            raise_on_error=False,
        ):
            if not self._has_work(info):
                continue
            try:
                handled += await self.drain(host)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-drain of %s failed", host)
        return handled

    def _has_work(self, groups: Any) -> bool:
        if isinstance(groups, Exception):
            return False  # no such stream: the host never reported
        mine = next((g for g in groups if _s(g["name"]) == self.group), None)
        if mine is None:
            return True  # never drained here: creating the group reads it from the start
        lag = mine.get("lag")
        return int(mine.get("pending", 0)) > 0 or lag is None or int(lag) > 0

    async def redrain_if_due(self) -> int:
        now = time.monotonic()
        if now - self.last_redrain < REDRAIN_EVERY_S:
            return 0
        self.last_redrain = now
        return await self.redrain_all()
