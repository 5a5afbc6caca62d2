"""Redis Streams wiring on FastStream's RedisBroker, with the guarantees FastStream lacks.

What this adds (see FIELD-NOTES.md for why each is needed):

* Consumer groups are created from id `0` before any subscriber starts, so entries
  published while a service was down are still delivered (FastStream would create them
  at `$`).
* Each entry is handed to a bounded pool of tasks, so one slow user never blocks the
  next one; an entry is acknowledged (XACK) only once its handler returned.
* A claim loop (XAUTOCLAIM) takes over entries left pending by a dead consumer, and by
  this one before a restart (a restarted consumer never re-reads its own pending list).
  Entries still being handled are "touched" (XCLAIM JUSTID) so no one claims them away.
* A delivery limit: an entry delivered more than `max_deliveries` times, or one that
  does not fit the contract, goes to the `deadletter` stream with its reason and is
  acknowledged; a hook lets the service mark the step failed so its request finishes.
* A handler that raises `RefusedError` has its entry dead-lettered with the error's code.
* Consumers de-duplicate on `event_id`.

Entries are written by `publish` as flat fields (`type`, `event_id`, `request_id`,
`data` = the JSON event), readable by any Redis client; the orchestrator's Lua scripts
write the same shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .errors import RefusedError
from .events import DeadLettered, Event, decode_event
from .metrics import DEADLETTER_TOTAL
from .streams import DEADLETTER

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 24 * 3600
DEADLETTER_MAXLEN = 100_000


def entry_fields(event: BaseModel) -> dict[str, str]:
    return {
        "type": str(getattr(event, "type", "unknown")),
        "event_id": str(getattr(event, "event_id", "")),
        "request_id": str(getattr(event, "request_id", "")),
        "data": event.model_dump_json(),
    }


async def publish(redis: Redis, stream: str, event: BaseModel) -> str:
    entry_id = await redis.xadd(stream, entry_fields(event))  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def ensure_groups(redis: Redis, pairs: Iterable[tuple[str, str]]) -> None:
    """Create each (stream, group) from id 0, creating the stream too; existing ones stay."""
    for stream, group in pairs:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def write_deadletter(
    redis: Redis,
    record: DeadLettered,
    *,
    metric_stream: str | None = None,
    stream: str = DEADLETTER,
) -> None:
    """Append `record` to `stream` (by default `deadletter`) and acknowledge the entry it
    gives up, atomically."""
    log.warning(
        "dead-lettering %s entry %s for group %s: %s (%s)",
        record.stream,
        record.entry_id,
        record.group,
        record.reason,
        record.detail[:200],
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            stream,
            {"type": "deadletter", "reason": record.reason, "data": record.model_dump_json()},
            maxlen=DEADLETTER_MAXLEN,
            approximate=True,
        )
        pipe.xack(record.stream, record.group, record.entry_id)
        await pipe.execute()
    DEADLETTER_TOTAL.labels(metric_stream or record.stream, record.reason).inc()


async def claim_stale(
    redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, *, count: int = 50
) -> AsyncIterator[tuple[str, dict[Any, Any], int]]:
    """Take over entries of `group` pending for longer than `min_idle_ms` (whoever held
    them, this consumer included): yields (entry id, fields, times delivered)."""
    start = "0-0"
    while True:
        result = await redis.xautoclaim(
            stream, group, consumer, min_idle_ms, start_id=start, count=count
        )
        next_start, entries = _s(result[0]), result[1]
        for entry in entries:
            entry_id, fields = _s(entry[0]), entry[1]
            if fields is None:
                continue  # deleted from the stream while pending
            pending = await redis.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
            yield entry_id, fields, int(pending[0]["times_delivered"]) if pending else 1
        if next_start in ("0-0", start) or not entries:
            return
        start = next_start


@dataclass(frozen=True, slots=True)
class Delivery:
    stream: str
    group: str
    entry_id: str
    deliveries: int


Handler = Callable[[Any, Delivery], Awaitable[None]]
DeadLetterHook = Callable[[Any, DeadLettered], Awaitable[None]]


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    handler: Handler
    # Event types this subscription accepts; any other one is dead-lettered.
    accepts: tuple[type[BaseModel], ...]
    # Called with the decoded event (when it could be decoded) after dead-lettering.
    on_deadletter: DeadLetterHook | None = None
    dedupe: bool = True
    # Dedupe keys are `<prefix>:<event_id>`, by default `sortie:seen:<group>`; a
    # workstation agent uses one per host so its Redis ACL can be limited to its own keys.
    dedupe_prefix: str | None = None
    # Where given-up entries go; a workstation agent writes its own per-host stream,
    # since an account that may XADD to a shared stream can block it for everyone.
    deadletter_stream: str = DEADLETTER


@dataclass(slots=True)
class _InFlight:
    stream: str
    group: str
    entry_id: str


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
    polling_interval_ms: int = 100
    graceful_timeout_s: float = 15.0
    # Consumers of a group that left no pending entry and were idle this long are removed
    # (a restarted process gets a new name: without this, dead names pile up). None: off.
    consumer_expiry_s: float | None = None
    janitor_interval_s: float = 60.0
    _sem: asyncio.Semaphore = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    _inflight: dict[str, _InFlight] = field(init=False, default_factory=dict)
    _loops: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _stopping: bool = field(init=False, default=False)
    _last_janitor: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.concurrency)
        for sub in self.subscriptions:
            self._register(sub)

    # -- wiring -------------------------------------------------------------------------
    def _register(self, sub: Subscription) -> None:
        stream_sub = StreamSub(
            sub.stream,
            group=sub.group,
            consumer=self.consumer,
            polling_interval=self.polling_interval_ms,
        )

        async def on_message(message: RedisStreamMessage) -> None:
            raw = message.raw_message
            entry_id = _s(raw["message_ids"][0])  # type: ignore[typeddict-item]
            fields = raw["data"]
            assert isinstance(fields, dict)
            await self._dispatch(sub, entry_id, fields, deliveries=1)

        on_message.__name__ = f"on_{sub.stream.replace('.', '_')}"
        self.broker.subscriber(
            stream=stream_sub,
            ack_policy=AckPolicy.MANUAL,
            title=f"{sub.stream}:{sub.group}",
        )(on_message)

    async def start(self) -> None:
        """Create the groups and start the claim loop. Call before `broker.start()`."""
        await ensure_groups(self.redis, {(s.stream, s.group) for s in self.subscriptions})
        self._loops.append(asyncio.create_task(self._claim_loop(), name="claim-loop"))

    async def stop(self) -> None:
        """Stop claiming, then let the handlers in flight finish (up to the grace time)."""
        self._stopping = True
        from .runtime import cancel_tasks

        await cancel_tasks(self._loops)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.graceful_timeout_s)
            for task in pending:
                task.cancel()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- processing ---------------------------------------------------------------------
    async def _dispatch(
        self, sub: Subscription, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        key = f"{sub.stream}\x00{entry_id}"
        if key in self._inflight:
            return  # already being handled here (claimed back from ourselves)
        # Back-pressure: wait for a free slot before taking the next entry.
        await self._sem.acquire()
        self._inflight[key] = _InFlight(sub.stream, sub.group, entry_id)
        task = asyncio.create_task(self._process(sub, entry_id, fields, deliveries))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._inflight.pop(key, None)
            self._sem.release()

        task.add_done_callback(done)

    async def _process(
        self, sub: Subscription, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        data = fields.get(b"data", fields.get("data", b""))
        delivery = Delivery(sub.stream, sub.group, entry_id, deliveries)
        try:
            event: Event | None = decode_event(data)
        except ValidationError as exc:
            await self._deadletter(sub, delivery, _s(data), None, "invalid_message", _short(exc))
            return
        assert event is not None
        if not isinstance(event, sub.accepts):
            await self._deadletter(
                sub, delivery, _s(data), event, "unexpected_type", f"type {event.type!r}"
            )
            return
        if deliveries > self.max_deliveries:
            await self._deadletter(
                sub,
                delivery,
                _s(data),
                event,
                "max_deliveries",
                f"delivered {deliveries} times (limit {self.max_deliveries})",
            )
            return
        seen_key = f"{sub.dedupe_prefix or f'sortie:seen:{sub.group}'}:{event.event_id}"
        if sub.dedupe and await self.redis.exists(seen_key):
            await self.redis.xack(sub.stream, sub.group, entry_id)
            return
        try:
            await sub.handler(event, delivery)
        except asyncio.CancelledError:
            raise
        except RefusedError as exc:
            # The handler judged the entry unacceptable (e.g. a forged report): give it up.
            await self._deadletter(sub, delivery, _s(data), event, exc.code, exc.message)
            return
        except Exception:
            # Left pending: the claim loop brings it back after `claim_idle_ms`, and the
            # delivery limit ends the loop for an entry that always fails.
            log.exception(
                "handler for %s entry %s failed (delivery %d); left pending",
                sub.stream,
                entry_id,
                deliveries,
            )
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            if sub.dedupe:
                pipe.set(seen_key, b"1", ex=SEEN_TTL_S)
            pipe.xack(sub.stream, sub.group, entry_id)
            await pipe.execute()

    async def _deadletter(
        self,
        sub: Subscription,
        delivery: Delivery,
        data: str,
        event: Any,
        reason: str,
        detail: str,
    ) -> None:
        record = DeadLettered(
            stream=sub.stream,
            group=sub.group,
            entry_id=delivery.entry_id,
            reason=reason,
            detail=detail[:2000],
            deliveries=delivery.deliveries,
            data=data[:65536],
        )
        if sub.on_deadletter is not None and event is not None:
            try:
                await sub.on_deadletter(event, record)
            except Exception:
                # Keep the entry pending: dead-lettering is retried on the next claim.
                log.exception("dead-letter hook failed for %s", delivery.entry_id)
                return
        await write_deadletter(self.redis, record, stream=sub.deadletter_stream)

    # -- claiming -----------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        interval = self.claim_interval_ms / 1000
        while not self._stopping:
            try:
                await self._touch_inflight()
                for sub in self.subscriptions:
                    await self._claim(sub)
                await self._expire_consumers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claim loop iteration failed")
            await asyncio.sleep(interval)

    async def _expire_consumers(self) -> int:
        """Delete dead consumer names: idle past the expiry and holding no pending entry.
        A live consumer polls, so its idle time stays small; one deleted by mistake is
        re-created by Redis at its next read."""
        now = asyncio.get_running_loop().time()
        if self.consumer_expiry_s is None or now - self._last_janitor < self.janitor_interval_s:
            return 0
        self._last_janitor = now
        removed = 0
        for stream, group in {(s.stream, s.group) for s in self.subscriptions}:
            for info in await self.redis.xinfo_consumers(stream, group):
                name = _s(info["name"])
                idle_s = int(info.get("idle", 0)) / 1000
                if name == self.consumer or int(info.get("pending", 0)):
                    continue
                if idle_s > self.consumer_expiry_s:
                    await self.redis.xgroup_delconsumer(stream, group, name)
                    removed += 1
                    log.info("removed dead consumer %s from %s/%s", name, stream, group)
        return removed

    async def _touch_inflight(self) -> None:
        """Reset the idle time of entries still being handled so nobody claims them."""
        by_stream: dict[tuple[str, str], list[Any]] = {}
        for item in list(self._inflight.values()):
            by_stream.setdefault((item.stream, item.group), []).append(item.entry_id)
        for (stream, group), ids in by_stream.items():
            await self.redis.xclaim(
                stream, group, self.consumer, min_idle_time=0, message_ids=ids, justid=True
            )

    async def _claim(self, sub: Subscription) -> None:
        claimed = claim_stale(self.redis, sub.stream, sub.group, self.consumer, self.claim_idle_ms)
        async for entry_id, fields, deliveries in claimed:
            if self._stopping:
                return
            log.info("claimed %s entry %s (delivery %d)", sub.stream, entry_id, deliveries)
            await self._dispatch(sub, entry_id, fields, deliveries)


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)
