"""Redis Streams consumers on FastStream's RedisBroker, with the guarantees FastStream lacks.

Every process reads through `Consumers` and handles each entry on the one message path
(`path.MessagePath`; see FIELD-NOTES.md for why each step is needed):

* Consumer groups are created from id `0` before any subscriber starts (FastStream would
  create them at `$`), and again whenever Redis answers NOGROUP (its data was lost):
  the stopped FastStream subscriber is started again and the process carries on.
* FastStream reads batches of at most `max_records` entries (XREADGROUP COUNT) and hands
  each to a bounded pool of tasks, so a process holds only what it can work on. The
  batch handler takes the raw batch (no injected message, so no thread hop per entry).
* Every entry a process holds, waiting for a slot or running, is in one registry
  (`_held`), checked and filled in one step: the reader and the claim loop never both
  run an entry. Held entries are "touched" (XCLAIM JUSTID) so no claim loop, this
  process's included, takes them away.
* A claim loop (XAUTOCLAIM) takes over entries left pending by a dead consumer, and by
  this one before a restart (a restarted consumer never re-reads its own pending list).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis

from .entries import (
    as_str,
    claim_stale,
    command_request_key,
    ensure_groups,
    entry_fields,
    is_nogroup,
    preview_request_key,
    publish,
    read_new,
    request_key,
    write_deadletter,
)
from .path import SEEN_TTL_S, MessagePath
from .redis_cluster import is_cluster
from .subscription import DeadLetterHook, Delivery, Handler, Subscription
from .tasks import cancel_tasks, pause

__all__ = [
    "SEEN_TTL_S",
    "Consumers",
    "DeadLetterHook",
    "Delivery",
    "Handler",
    "Subscription",
    "claim_stale",
    "command_request_key",
    "ensure_groups",
    "entry_fields",
    "is_nogroup",
    "preview_request_key",
    "publish",
    "request_key",
    "write_deadletter",
]

log = logging.getLogger(__name__)


class _Raw(StreamMessage[Any]):
    pass


async def _parse(msg: Any) -> StreamMessage[Any]:
    # Async on purpose: FastStream runs a sync parser in a thread, once per message.
    return _Raw(raw_message=msg, body=b"")


async def _decode(msg: StreamMessage[Any]) -> Any:
    return msg.raw_message


@dataclass
class Consumers:
    """Every stream subscription of one service process."""

    broker: RedisBroker
    redis: Redis
    consumer: str
    subscriptions: list[Subscription]
    concurrency: int = 32
    max_deliveries: int = 5
    claim_idle_ms: int = 15_000
    claim_interval_ms: int = 1_000
    polling_interval_ms: int = 1_000
    graceful_timeout_s: float = 15.0
    # Entries larger than this (all fields) are dead-lettered `too_large`.
    max_entry_bytes: int = 1_048_576
    # Consumers of a group that left no pending entry and were idle this long are removed
    # (a restarted process gets a new name: without this, dead names pile up). None: off.
    consumer_expiry_s: float | None = None
    janitor_interval_s: float = 60.0
    _sem: asyncio.Semaphore = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    # (stream, entry id) -> group: every entry this process holds, waiting or running.
    _held: dict[tuple[str, str], str] = field(init=False, default_factory=dict)
    _loops: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _subscribers: list[Any] = field(init=False, default_factory=list)
    _stopping: bool = field(init=False, default=False)
    _last_janitor: float = field(init=False, default=float("-inf"))
    _last_touch: float = field(init=False, default=float("-inf"))
    path: MessagePath = field(init=False)
    recreated_groups: int = field(init=False, default=0)
    # The claim loop reads new entries too (`_read_new`): on a Redis Cluster only.
    _catch_up: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.concurrency)
        self._catch_up = is_cluster(self.redis)
        self.path = MessagePath(
            self.redis, max_deliveries=self.max_deliveries, max_entry_bytes=self.max_entry_bytes
        )
        for sub in self.subscriptions:
            self._register(sub)

    # -- wiring -------------------------------------------------------------------------
    def _register(self, sub: Subscription) -> None:
        stream_sub = StreamSub(
            sub.stream,
            group=sub.group,
            consumer=self.consumer,
            polling_interval=self.polling_interval_ms,
            batch=True,
            max_records=self.concurrency,
        )

        # `raw` is the batch as read (ids and fields): no model, no injected parameter.
        async def on_batch(raw: Any) -> None:
            # The whole batch is held (and kept alive) before any of it waits for a slot.
            taken = [
                (as_str(entry_id), fields)
                for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)
                if self._take(sub.stream, as_str(entry_id), sub.group)
            ]
            for entry_id, fields in taken:
                await self._sem.acquire()  # back-pressure: the read waits for a slot
                self._spawn(sub, entry_id, fields, 1, acquired=True)

        on_batch.__name__ = f"on_{sub.stream.replace('.', '_')}"
        subscriber = self.broker.subscriber(
            stream=stream_sub,
            ack_policy=AckPolicy.MANUAL,
            title=f"{sub.stream}:{sub.group}",
            parser=_parse,
            decoder=_decode,
        )
        subscriber(on_batch)
        self._subscribers.append(subscriber)

    async def start(self) -> None:
        """Create the groups and start the claim loop. Call before `broker.start()`."""
        await ensure_groups(self.redis, self._pairs())
        self._loops.append(asyncio.create_task(self._claim_loop(), name="claim-loop"))

    async def stop(self) -> None:
        """Stop claiming, then let the handlers in flight finish (up to the grace time)."""
        self._stopping = True
        await cancel_tasks(self._loops)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.graceful_timeout_s)
            for task in pending:
                task.cancel()

    def _pairs(self) -> set[tuple[str, str]]:
        return {(s.stream, s.group) for s in self.subscriptions}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def held(self) -> int:
        return len(self._held)

    def healthy(self) -> bool:
        """Every subscriber reading (after `broker.start()`), the claim loop alive."""
        loops_ok = bool(self._loops) and not any(t.done() for t in self._loops)
        return loops_ok and all(s.running for s in self._subscribers)

    # -- taking entries into work -------------------------------------------------------
    def _take(self, stream: str, entry_id: str, group: str) -> bool:
        """Check and fill the registry in one step (no await in between)."""
        key = (stream, entry_id)
        if key in self._held:
            return False
        self._held[key] = group
        return True

    def _spawn(
        self,
        sub: Subscription,
        entry_id: str,
        fields: dict[Any, Any],
        deliveries: int,
        *,
        acquired: bool,
    ) -> None:
        async def run() -> None:
            if not acquired:
                await self._sem.acquire()
            try:
                await self.process(sub, entry_id, fields, deliveries)
            except Exception:
                # Redis failed around the handler (e.g. lost its data meanwhile): the
                # entry stays pending, or was lost with the rest.
                log.exception("%s entry %s: not finished; left pending", sub.stream, entry_id)
            finally:
                self._sem.release()

        task = asyncio.create_task(run())
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._held.pop((sub.stream, entry_id), None)

        task.add_done_callback(done)

    async def process(
        self, sub: Subscription, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        """One entry on the message path (see `path.MessagePath.process`)."""
        await self.path.process(sub, entry_id, fields, deliveries)

    # -- claiming, keeping alive, recovering --------------------------------------------
    async def _claim_loop(self) -> None:
        interval = self.claim_interval_ms / 1000
        while not self._stopping:
            try:
                await self._touch_held()
                await self._restart_stopped()
                for sub in self.subscriptions:
                    await self._claim(sub)
                    if self._catch_up:
                        await self._read_new(sub)
                await self._expire_consumers()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_nogroup(exc):
                    try:
                        await self._recreate_groups()
                    except Exception:  # Redis went away meanwhile: the next turn retries
                        log.exception("consumer groups not recreated; trying again")
                else:
                    log.exception("claim loop iteration failed")
            await pause(interval)

    async def _recreate_groups(self) -> None:
        log.warning("consumer groups missing (Redis lost its data?): creating them from 0")
        await ensure_groups(self.redis, self._pairs())
        self.recreated_groups += 1

    async def _restart_stopped(self) -> None:
        """FastStream stops a subscriber for good on NOGROUP: recreate and restart it."""
        if self._stopping or not self.broker.running:
            return
        stopped = [s for s in self._subscribers if not s.running]
        if not stopped:
            return
        await self._recreate_groups()
        for subscriber in stopped:
            log.warning("restarting subscriber %s", subscriber.specification.call_name)
            await subscriber.start()

    async def _expire_consumers(self) -> int:
        """Delete dead consumer names: idle past the expiry and holding no pending entry.
        A live consumer polls, so its idle time stays small; one deleted by mistake is
        re-created by Redis at its next read."""
        now = asyncio.get_running_loop().time()
        if self.consumer_expiry_s is None or now - self._last_janitor < self.janitor_interval_s:
            return 0
        self._last_janitor = now
        removed = 0
        for stream, group in self._pairs():
            for info in await self.redis.xinfo_consumers(stream, group):
                name = as_str(info["name"])
                idle_s = int(info.get("idle", 0)) / 1000
                if name == self.consumer or int(info.get("pending", 0)):
                    continue
                if idle_s > self.consumer_expiry_s:
                    await self.redis.xgroup_delconsumer(stream, group, name)
                    removed += 1
                    log.info("removed dead consumer %s from %s/%s", name, stream, group)
        return removed

    async def _touch_held(self) -> None:
        """Reset the idle time of every entry held here (waiting or running), a few times
        per `claim_idle_ms`, so that no claim loop takes them."""
        now = asyncio.get_running_loop().time()
        if now - self._last_touch < self.claim_idle_ms / 3000:
            return
        self._last_touch = now
        by_stream: dict[tuple[str, str], list[Any]] = {}
        for (stream, entry_id), group in list(self._held.items()):
            by_stream.setdefault((stream, group), []).append(entry_id)
        if not by_stream:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for (stream, group), ids in by_stream.items():
                pipe.xclaim(
                    stream, group, self.consumer, min_idle_time=0, message_ids=ids, justid=True
                )
            await pipe.execute()

    async def _read_new(self, sub: Subscription) -> None:
        """On a Cluster, FastStream's reader can stay stuck after a primary died (seen: a
        minute without a read while its stream filled, its client still on the dead
        node's connection): the claim loop also reads what is new, through Sortie's own
        client, which learns the new layout (redis_cluster.SortieCluster)."""
        room = 2 * self.concurrency - len(self._held)
        if room <= 0 or self._stopping:
            return
        for entry_id, fields in await read_new(
            self.redis, sub.stream, sub.group, self.consumer, count=room
        ):
            if self._take(sub.stream, entry_id, sub.group):
                self._spawn(sub, entry_id, fields, 1, acquired=False)

    async def _claim(self, sub: Subscription) -> None:
        room = 2 * self.concurrency - len(self._held)
        if room <= 0:
            return
        claimed = claim_stale(
            self.redis, sub.stream, sub.group, self.consumer, self.claim_idle_ms, count=room
        )
        async for entry_id, fields, deliveries in claimed:
            if self._stopping:
                return
            if not self._take(sub.stream, entry_id, sub.group):
                continue
            log.info("claimed %s entry %s (delivery %d)", sub.stream, entry_id, deliveries)
            self._spawn(sub, entry_id, fields, deliveries, acquired=False)
