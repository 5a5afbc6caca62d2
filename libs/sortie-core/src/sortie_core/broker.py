"""Redis Streams wiring on FastStream's RedisBroker, with the guarantees FastStream lacks.

One message path for every process (see FIELD-NOTES.md for why each step is needed):

* Consumer groups are created from id `0` before any subscriber starts (FastStream would
  create them at `$`), and again whenever Redis answers NOGROUP (its data was lost):
  the stopped FastStream subscriber is started again and the process carries on.
* FastStream reads batches of at most `max_records` entries (XREADGROUP COUNT) and hands
  each to a bounded pool of tasks, so a process holds only what it can work on.
* Every entry a process holds, waiting for a slot or running, is in one registry
  (`_held`), checked and filled in one step: the reader and the claim loop never both
  run an entry. Held entries are "touched" (XCLAIM JUSTID) so no claim loop, this
  process's included, takes them away.
* A claim loop (XAUTOCLAIM) takes over entries left pending by a dead consumer, and by
  this one before a restart (a restarted consumer never re-reads its own pending list).
* `process` is the path itself: size bound, delivery limit, decode (undecodable bytes are
  dead-lettered escaped), `version`, accepted types, then one script that checks the
  request exists (commands) and marks the event as started (de-duplication on
  `event_id`, so two copies run once), the handler, and one MULTI that publishes the
  handler's result to the subscription's `publishes` stream, marks the event done and
  acknowledges. A handler that raises `RefusedError` has its entry dead-lettered with
  the error's code; any other exception leaves it pending (claimed again later).
* Dead-lettering appends to `deadletter`, publishes the hook's result (the failed step,
  so the request still finishes) and acknowledges, in one MULTI.

Entries are written by `publish` as flat fields (`type`, `event_id`, `request_id`,
`data` = the JSON event), readable by any Redis client; the orchestrator's Lua scripts
write the same shape. The scripts here touch a stream and a key of another slot: on Redis
Cluster they would need the streams to share the keys' hash tag.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from .errors import RefusedError
from .events import CONTRACT_VERSION, DeadLettered, decode_event
from .metrics import DEADLETTER_TOTAL
from .streams import DEADLETTER, preview_key

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 24 * 3600
DEADLETTER_MAXLEN = 100_000
DEADLETTER_DATA_MAX = 65536


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


def request_key(request_id: object) -> str:
    """The orchestrator's hash of one request (its store writes it with the request's
    first commands, atomically): a command whose request key is missing was never
    accepted, or its request expired."""
    return f"sortie:req:{{{request_id}}}"


def command_request_key(event: Any) -> str:
    return request_key(event.request_id)


def preview_request_key(event: Any) -> str:
    return preview_key(event.request_id)


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


async def ensure_groups(redis: Redis, pairs: Iterable[tuple[str, str]]) -> None:
    """Create each (stream, group) from id 0, creating the stream too; existing ones stay."""
    for stream, group in pairs:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _deadletter_fields(record: DeadLettered) -> dict[str, str]:
    return {"type": "deadletter", "reason": record.reason, "data": record.model_dump_json()}


async def write_deadletter(
    redis: Redis,
    record: DeadLettered,
    *,
    metric_stream: str | None = None,
    stream: str = DEADLETTER,
    also: tuple[str, BaseModel] | None = None,
) -> None:
    """Append `record` to `stream` (by default `deadletter`; an agent's own per-host
    stream for agents), publish `also` (stream, event) when given, and acknowledge the
    entry given up: one MULTI."""
    log.warning(
        "dead-lettering %s entry %s for group %s: %s (%s)",
        record.stream,
        record.entry_id,
        record.group,
        record.reason,
        record.detail[:200],
    )
    async with redis.pipeline(transaction=True) as pipe:
        fields: dict[Any, Any] = _deadletter_fields(record)
        pipe.xadd(stream, fields, maxlen=DEADLETTER_MAXLEN, approximate=True)
        if also is not None:
            pipe.xadd(also[0], entry_fields(also[1]))  # type: ignore[arg-type]
        pipe.xack(record.stream, record.group, record.entry_id)
        await pipe.execute()
    DEADLETTER_TOTAL.labels(metric_stream or record.stream, record.reason).inc()


async def claim_stale(
    redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, *, count: int = 50
) -> AsyncIterator[tuple[str, dict[Any, Any], int]]:
    """Take over up to `count` entries of `group` pending for longer than `min_idle_ms`
    (whoever held them, this consumer included): yields (id, fields, times delivered)."""
    start = "0-0"
    left = count
    while left > 0:
        result = await redis.xautoclaim(
            stream, group, consumer, min_idle_ms, start_id=start, count=left
        )
        next_start, entries = _s(result[0]), result[1]
        live = [(_s(e[0]), e[1]) for e in entries if e[1] is not None]  # None: deleted
        left -= len(entries)
        if live:
            # One XPENDING for the whole range: how often each was delivered.
            pending = await redis.xpending_range(
                stream, group, min=live[0][0], max=live[-1][0], count=len(entries)
            )
            times: dict[str, int] = {
                _s(p["message_id"]): int(p["times_delivered"])  # type: ignore[arg-type]
                for p in pending
            }
            for entry_id, fields in live:
                yield entry_id, fields, times.get(entry_id, 1)
        if next_start in ("0-0", start) or not entries:
            return
        start = next_start


@dataclass(slots=True)
class Delivery:
    stream: str
    group: str
    entry_id: str
    deliveries: int
    # Set by a handler that acknowledged the entry in its own script (the orchestrator's
    # compare-and-set does, to save a round trip).
    acked: bool = False


# A handler returns the event to publish on its subscription's `publishes` stream, or None.
Handler = Callable[[Any, Delivery], Awaitable[BaseModel | None]]
# Called with the decoded event (when it could be decoded) when its entry is given up;
# returns the report to publish with the dead-letter record (the failed step), or None.
DeadLetterHook = Callable[[Any, DeadLettered], BaseModel | None]

# KEYS: seen; ARGV: token, ttl. 'done': handled before; 'copy': another copy of the
# event is in work; 'go': marked as started by `token`. It touches only the service's own
# de-duplication key, so a worker's Redis user needs no write access to anything else:
# the request's existence is checked beside it (EXISTS, in the same round trip) and a
# duplicate is acknowledged after.
_BEGIN = """
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then
  if v == 'done' then return 'done' end
  return 'copy'
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 'go'
"""

# KEYS: seen; ARGV: token. A failed handler gives its mark up, so a later copy may run.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    handler: Handler
    # Event types this subscription accepts; any other one is dead-lettered.
    accepts: tuple[type[BaseModel], ...]
    on_deadletter: DeadLetterHook | None = None
    # Where the handler's (and the dead-letter hook's) result is published.
    publishes: str | None = None
    # A Pub/Sub (channel, message) published with each result (an agent's wake-up of the
    # orchestrator), or None. Pub/Sub, not a stream: nothing one agent publishes there can
    # block or empty what another agent writes.
    announce: tuple[str, str] | None = None
    dedupe: bool = True
    # Dedupe keys are `<prefix>:<event_id>`, by default `sortie:seen:<group>`; a
    # workstation agent uses one per host so its Redis ACL can be limited to its own keys.
    dedupe_prefix: str | None = None
    # Where given-up entries go; a workstation agent writes its own per-host stream,
    # since an account that may XADD to a shared stream can block it for everyone.
    deadletter_stream: str = DEADLETTER
    # A command names its request's key: refused (`unknown_request`) when it does not
    # exist, i.e. the orchestrator never accepted that request (or it expired).
    request_key: Callable[[Any], str] | None = None
    # Reason for a type this subscription does not accept.
    unexpected_reason: str = "unexpected_type"
    # Label of `sortie_deadletter_total` (one for all agents' results streams).
    metric_stream: str | None = None


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text(value: Any) -> str:
    """Entry data for a dead-letter record: undecodable bytes escaped, never raising."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _size(fields: dict[Any, Any]) -> int:
    return sum(len(k) + len(v) for k, v in fields.items() if isinstance(v, bytes | str))


def _version_of(data: Any) -> object:
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed.get("version") if isinstance(parsed, dict) else None


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
    polling_interval_ms: int = 100
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
    _begin: Any = field(init=False)
    _release: Any = field(init=False)
    recreated_groups: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.concurrency)
        self._begin = self.redis.register_script(_BEGIN)
        self._release = self.redis.register_script(_RELEASE)
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
                (_s(entry_id), fields)
                for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)
                if self._take(sub.stream, _s(entry_id), sub.group)
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
        from .runtime import cancel_tasks

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

    # -- the path -----------------------------------------------------------------------
    async def process(
        self, sub: Subscription, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        """One entry, start to end: handled and acknowledged, dead-lettered, or left
        pending for a later delivery. Raises only what the handler's transport raised."""
        data = fields.get(b"data", fields.get("data", b""))
        delivery = Delivery(sub.stream, sub.group, entry_id, deliveries)
        size = _size(fields)
        if size > self.max_entry_bytes:
            await self._give_up(sub, delivery, data, None, "too_large", f"{size} bytes")
            return
        if deliveries > self.max_deliveries:
            limit = f"delivered {deliveries} times (limit {self.max_deliveries})"
            await self._give_up(
                sub, delivery, data, self._try_decode(data), "max_deliveries", limit
            )
            return
        try:
            event: Any = decode_event(data)
        except (ValidationError, UnicodeDecodeError) as exc:
            version = _version_of(data)
            if version is not None and version != CONTRACT_VERSION:
                await self._give_up(
                    sub, delivery, data, None, "unsupported_version", f"version {version!r}"
                )
            else:
                await self._give_up(sub, delivery, data, None, "invalid_message", _short(exc))
            return
        if event.version != CONTRACT_VERSION:
            detail = f"version {event.version} (this consumer reads {CONTRACT_VERSION})"
            await self._give_up(sub, delivery, data, None, "unsupported_version", detail)
            return
        if not isinstance(event, sub.accepts):
            reason, detail = sub.unexpected_reason, f"type {event.type!r}"
            await self._give_up(sub, delivery, data, event, reason, detail)
            return
        event_id = getattr(event, "event_id", "")
        seen_key = f"{sub.dedupe_prefix or f'sortie:seen:{sub.group}'}:{event_id}"
        token = f"{sub.stream}/{entry_id}"
        if sub.dedupe or sub.request_key is not None:
            verdict = await self._start(sub, event, seen_key, token)
            if verdict == "unknown":
                detail = f"request {getattr(event, 'request_id', '?')} was never accepted"
                await self._give_up(sub, delivery, data, None, "unknown_request", detail)
                return
            if verdict != "go":
                # A copy already handled, or in work elsewhere: acknowledged.
                await self.redis.xack(sub.stream, sub.group, entry_id)  # type: ignore[no-untyped-call]
                return
        try:
            result = await sub.handler(event, delivery)
        except asyncio.CancelledError:
            await self._forget(sub, seen_key, token)
            raise
        except RefusedError as exc:
            # The handler judged the entry unacceptable (e.g. a forged report): give it up.
            await self._give_up(sub, delivery, data, event, exc.code, exc.message)
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
            await self._forget(sub, seen_key, token)
            return
        if delivery.acked and result is None and not sub.dedupe:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            self._publish_result(pipe, sub, result)
            if sub.dedupe:
                pipe.set(seen_key, b"done", ex=SEEN_TTL_S)
            if not delivery.acked:
                pipe.xack(sub.stream, sub.group, entry_id)
            await pipe.execute()

    async def _start(self, sub: Subscription, event: Any, seen_key: str, token: str) -> str:
        """One round trip: does the request exist (commands), and is this event new
        (marked as started) or a copy: `unknown`, `done`, `copy` or `go`."""
        for _ in range(2):
            # EVALSHA by hand: redis-py's pipelines send SCRIPT EXISTS before every
            # execute for registered scripts (one more round trip each time).
            async with self.redis.pipeline(transaction=False) as pipe:
                if sub.request_key is not None:
                    pipe.exists(sub.request_key(event))
                if sub.dedupe:
                    pipe.evalsha(self._begin.sha, 1, seen_key, token, SEEN_TTL_S)
                replies = await pipe.execute(raise_on_error=False)
            if not (sub.dedupe and isinstance(replies[-1], NoScriptError)):
                break
            await self.redis.script_load(_BEGIN)  # Redis restarted, or first use
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if sub.request_key is not None and not replies[0]:
            if sub.dedupe:
                await self._forget(sub, seen_key, token)
            return "unknown"
        return _s(replies[-1]) if sub.dedupe else "go"

    def _publish_result(self, pipe: Any, sub: Subscription, result: BaseModel | None) -> None:
        if result is None or sub.publishes is None:
            return
        pipe.xadd(sub.publishes, entry_fields(result))
        if sub.announce is not None:
            pipe.publish(*sub.announce)

    async def _forget(self, sub: Subscription, seen_key: str, token: str) -> None:
        if sub.dedupe:
            try:
                await self._release(keys=[seen_key], args=[token])
            except Exception:
                log.warning("could not release %s (it expires on its own)", seen_key)

    def _try_decode(self, data: Any) -> Any:
        try:
            return decode_event(data)
        except (ValidationError, UnicodeDecodeError):
            return None

    async def _give_up(
        self,
        sub: Subscription,
        delivery: Delivery,
        data: Any,
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
            data=_text(data)[:DEADLETTER_DATA_MAX],
        )
        also: tuple[str, BaseModel] | None = None
        if sub.on_deadletter is not None and event is not None:
            try:
                report = sub.on_deadletter(event, record)
            except Exception:
                log.exception("dead-letter hook failed for %s", delivery.entry_id)
                report = None
            if report is not None and sub.publishes is not None:
                also = (sub.publishes, report)
        await write_deadletter(
            self.redis,
            record,
            metric_stream=sub.metric_stream,
            stream=sub.deadletter_stream,
            also=also,
        )

    # -- claiming, keeping alive, recovering --------------------------------------------
    async def _claim_loop(self) -> None:
        interval = self.claim_interval_ms / 1000
        while not self._stopping:
            try:
                await self._touch_held()
                await self._restart_stopped()
                for sub in self.subscriptions:
                    await self._claim(sub)
                await self._expire_consumers()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_nogroup(exc):
                    await self._recreate_groups()
                else:
                    log.exception("claim loop iteration failed")
            await asyncio.sleep(interval)

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
                name = _s(info["name"])
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


def _short(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {exc}"[:500]
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)
