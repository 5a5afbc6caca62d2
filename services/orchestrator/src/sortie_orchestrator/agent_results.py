"""Workstation agents' reports, each read from the stream only that agent may write.

An agent appends its `RevocationCompleted` to `agent.results.<host>` (its Redis ACL
allows no other report stream) and announces `agent.results_available` on
`agent.presence`. On each announcement, and every `REDRAIN_EVERY_S` for every known host
(an announcement lost to a crash), the orchestrator drains that host's stream with its
consumer group. A report is applied only if it speaks for that very host; any other
entry is dead-lettered, so a compromised agent cannot report for another service or
another host, and a forged announcement only makes the orchestrator re-read a stream
that only that host can write.

Several orchestrator replicas may drain the same host at once: the consumer group hands
each entry to one of them, a re-claimed entry may be applied twice, and
`handlers.on_revocation` is idempotent (the saga ignores a service already reported).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sortie_core import streams
from sortie_core.broker import DEADLETTER_MAXLEN, ensure_groups
from sortie_core.events import DeadLettered, RevocationCompleted, decode_event
from sortie_core.metrics import DEADLETTER_TOTAL

from . import handlers
from .presence import AGENTS

log = logging.getLogger(__name__)

REDRAIN_EVERY_S = 30.0
BATCH = 100
# Bounds one drain; whatever is left is read on the next announcement or re-drain.
MAX_BATCHES = 50
# One metrics label for every host's stream, not one series per host.
METRIC_STREAM = f"{streams.AGENT_RESULTS_PREFIX}*"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def deadletter(
    redis: Redis,
    *,
    stream: str,
    group: str,
    entry_id: str,
    deliveries: int,
    data: str,
    reason: str,
    detail: str,
    metric_stream: str | None = None,
) -> None:
    """Write the `deadletter` record (the shape `Consumers` writes) and acknowledge."""
    record = DeadLettered(
        stream=stream,
        group=group,
        entry_id=entry_id,
        reason=reason,
        detail=detail[:2000],
        deliveries=deliveries,
        data=data[:65536],
    )
    log.warning("dead-lettering %s entry %s: %s (%s)", stream, entry_id, reason, detail[:200])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            streams.DEADLETTER,
            {"type": "deadletter", "reason": reason, "data": record.model_dump_json()},
            maxlen=DEADLETTER_MAXLEN,
            approximate=True,
        )
        pipe.xack(stream, group, entry_id)
        await pipe.execute()
    DEADLETTER_TOTAL.labels(metric_stream or stream, reason).inc()


class AgentResults:
    def __init__(
        self,
        deps: handlers.Deps,
        redis: Redis,
        *,
        consumer: str,
        claim_idle_ms: int,
        max_deliveries: int,
    ) -> None:
        self.deps = deps
        self.redis = redis
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.group = streams.GROUP_ORCHESTRATOR
        self.last_redrain = float("-inf")
        self._grouped: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def drain(self, host: str) -> int:
        """Handle this host's stale pending entries, then its new ones; returns how many
        entries were handled (applied or dead-lettered)."""
        if not streams.valid_host(host):
            return 0
        stream = streams.agent_results_stream(host)
        lock = self._locks.setdefault(stream, asyncio.Lock())
        async with lock:
            if stream not in self._grouped:
                await ensure_groups(self.redis, [(stream, self.group)])
                self._grouped.add(stream)
            try:
                return await self._claim(host, stream) + await self._read_new(host, stream)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._grouped.discard(stream)  # the stream was deleted: recreate next time
                raise

    async def _claim(self, host: str, stream: str) -> int:
        handled, start = 0, "0-0"
        for _ in range(MAX_BATCHES):
            result = await self.redis.xautoclaim(
                stream, self.group, self.consumer, self.claim_idle_ms, start_id=start, count=BATCH
            )
            next_start, entries = _s(result[0]), result[1]
            for entry_id, fields in entries:
                if fields is None:
                    continue  # deleted from the stream while pending
                pending = await self.redis.xpending_range(
                    stream, self.group, min=entry_id, max=entry_id, count=1
                )
                deliveries = int(pending[0]["times_delivered"]) if pending else 1
                await self._handle(host, stream, _s(entry_id), fields, deliveries)
                handled += 1
            if next_start == "0-0" or not entries:
                break
            start = next_start
        return handled

    async def _read_new(self, host: str, stream: str) -> int:
        handled = 0
        for _ in range(MAX_BATCHES):
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {stream: ">"}, count=BATCH
            )
            entries: list[Any] = reply[0][1] if reply else []  # [[stream, entries]]
            for entry_id, fields in entries:
                await self._handle(host, stream, _s(entry_id), fields, 1)
                handled += 1
            if len(entries) < BATCH:
                break
        return handled

    async def _handle(
        self, host: str, stream: str, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        data = _s(fields.get(b"data", fields.get("data", b"")))

        async def refuse(reason: str, detail: str) -> None:
            await deadletter(
                self.redis,
                stream=stream,
                group=self.group,
                entry_id=entry_id,
                deliveries=deliveries,
                data=data,
                reason=reason,
                detail=detail,
                metric_stream=METRIC_STREAM,
            )

        try:
            event = decode_event(data)
        except ValidationError as exc:
            await refuse("invalid_message", f"{exc.error_count()} validation error(s)")
            return
        if not isinstance(event, RevocationCompleted):
            await refuse("forged_report", f"type {event.type!r} on a results stream")
            return
        if event.service != f"workstation:{host.lower()}":
            await refuse("forged_report", f"service {event.service!r} reported by {host}")
            return
        if deliveries > self.max_deliveries:
            await refuse("max_deliveries", f"delivered {deliveries} times")
            return
        try:
            await handlers.on_revocation(self.deps, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left pending: the next drain re-claims it once `claim_idle_ms` passed.
            log.exception("report %s of %s failed; left pending", entry_id, host)
            return
        await self.redis.xack(stream, self.group, entry_id)

    async def redrain_all(self) -> int:
        """Drain every known host's results stream (those that ever reported)."""
        members = await self.redis.smembers(AGENTS)  # type: ignore[misc]
        hosts = sorted(_s(m) for m in members if streams.valid_host(_s(m)))
        handled = 0
        for i in range(0, len(hosts), 500):
            chunk = hosts[i : i + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for host in chunk:
                    pipe.exists(streams.agent_results_stream(host))
                present = await pipe.execute()
            for host, exists in zip(chunk, present, strict=True):
                if not exists:
                    continue
                try:
                    handled += await self.drain(host)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("re-drain of %s failed", host)
        return handled

    async def redrain_if_due(self) -> int:
        now = time.monotonic()
        if now - self.last_redrain < REDRAIN_EVERY_S:
            return 0
        self.last_redrain = now
        return await self.redrain_all()
