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
from sortie_core.broker import claim_stale, ensure_groups, write_deadletter
from sortie_core.events import DeadLettered, RevocationCompleted, decode_event

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
        handled = 0
        claimed = claim_stale(
            self.redis, stream, self.group, self.consumer, self.claim_idle_ms, count=BATCH
        )
        async for entry_id, fields, deliveries in claimed:
            await self._handle(host, stream, entry_id, fields, deliveries)
            handled += 1
            if handled >= BATCH * MAX_BATCHES:
                break
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
            record = DeadLettered(
                stream=stream,
                group=self.group,
                entry_id=entry_id,
                reason=reason,
                detail=detail[:2000],
                deliveries=deliveries,
                data=data[:65536],
            )
            await write_deadletter(self.redis, record, metric_stream=METRIC_STREAM)

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
        """Drain every known host's results stream that holds something for this group:
        one pipelined XINFO GROUPS per 500 hosts, then a drain only where it is needed."""
        members = await self.redis.smembers(AGENTS)  # type: ignore[misc]
        hosts = sorted(_s(m) for m in members if streams.valid_host(_s(m)))
        handled = 0
        for i in range(0, len(hosts), 500):
            chunk = hosts[i : i + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for host in chunk:
                    pipe.xinfo_groups(streams.agent_results_stream(host))
                infos = await pipe.execute(raise_on_error=False)
            for host, info in zip(chunk, infos, strict=True):
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
