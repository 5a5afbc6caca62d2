"""The message path, once for every process: one entry from its fields to its end.

Size bound, delivery limit, decode (undecodable bytes are dead-lettered escaped),
`version`, accepted types; then one round trip that checks the request exists (commands)
and marks the event as started (de-duplication on `event_id`, so two copies run once);
the handler; and one MULTI that publishes the handler's result to the subscription's
`publishes` stream, marks the event done and acknowledges. A handler that raises
`RefusedError` has its entry dead-lettered with the error's code; any other exception
leaves it pending (claimed again later). Dead-lettering appends to `deadletter`,
publishes the hook's result (the failed step, so the request still finishes) and
acknowledges, in one MULTI.

Each script touches one key; on Redis Cluster the MULTIs become the same commands in
order (publish, mark done, acknowledge: `redis_cluster.multi`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from .coalesce import coalescer_for
from .entries import (
    DEADLETTER_DATA_MAX,
    as_str,
    entry_fields,
    entry_size,
    escaped_text,
    short_error,
    version_of,
    write_deadletter,
)
from .errors import RefusedError
from .events import CONTRACT_VERSION, DeadLettered, decode_event
from .subscription import Delivery, Subscription

log = logging.getLogger(__name__)

SEEN_TTL_S = 7 * 24 * 3600

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
class _Refusal:
    """Why an entry is given up before its handler runs."""

    reason: str
    detail: str
    event: Any = None


class MessagePath:
    """`process` is the path; `Consumers` (readers, claim loop) and the orchestrator's
    agent-results drain both feed it."""

    def __init__(self, redis: Redis, *, max_deliveries: int, max_entry_bytes: int) -> None:
        self.redis = redis
        # Every entry in work shares its round trips with the others (group commit).
        self.trips = coalescer_for(redis)
        self.max_deliveries = max_deliveries
        self.max_entry_bytes = max_entry_bytes
        self._begin = redis.register_script(_BEGIN)
        self._release = redis.register_script(_RELEASE)

    async def process(
        self, sub: Subscription, entry_id: str, fields: dict[Any, Any], deliveries: int
    ) -> None:
        """One entry, start to end: handled and acknowledged, dead-lettered, or left
        pending for a later delivery. Raises only what the handler's transport raised."""
        data = fields.get(b"data", fields.get("data", b""))
        delivery = Delivery(sub.stream, sub.group, entry_id, deliveries)
        admitted = self._admit(sub, fields, data, deliveries)
        if isinstance(admitted, _Refusal):
            await self.give_up(sub, delivery, data, admitted)
            return
        event = admitted
        seen_key = sub.seen_key(getattr(event, "event_id", ""))
        token = f"{sub.stream}/{entry_id}"
        if sub.dedupe or sub.request_key is not None:
            verdict = await self._start(sub, event, seen_key, token)
            if verdict == "unknown":
                detail = f"request {getattr(event, 'request_id', '?')} was never accepted"
                await self.give_up(sub, delivery, data, _Refusal("unknown_request", detail))
                return
            if verdict != "go":
                # A copy already handled, or in work elsewhere: acknowledged.
                await self.trips.run(lambda pipe: pipe.xack(sub.stream, sub.group, entry_id))
                return
        await self._handle(sub, delivery, data, event, seen_key, token)

    def _admit(self, sub: Subscription, fields: dict[Any, Any], data: Any, deliveries: int) -> Any:
        """The decoded event, or why it is refused (no Redis call)."""
        size = entry_size(fields)
        if size > self.max_entry_bytes:
            return _Refusal("too_large", f"{size} bytes")
        if deliveries > self.max_deliveries:
            limit = f"delivered {deliveries} times (limit {self.max_deliveries})"
            return _Refusal("max_deliveries", limit, _try_decode(data))
        try:
            event: Any = decode_event(data)
        except (ValidationError, UnicodeDecodeError) as exc:
            version = version_of(data)
            if version is not None and version != CONTRACT_VERSION:
                return _Refusal("unsupported_version", f"version {version!r}")
            return _Refusal("invalid_message", short_error(exc))
        if event.version != CONTRACT_VERSION:
            detail = f"version {event.version} (this consumer reads {CONTRACT_VERSION})"
            return _Refusal("unsupported_version", detail)
        if not isinstance(event, sub.accepts):
            return _Refusal(sub.unexpected_reason, f"type {event.type!r}", event)
        return event

    async def _handle(
        self, sub: Subscription, delivery: Delivery, data: Any, event: Any, seen: str, token: str
    ) -> None:
        try:
            result = await sub.handler(event, delivery)
        except asyncio.CancelledError:
            await self._forget(sub, seen, token)
            raise
        except RefusedError as exc:
            # The handler judged the entry unacceptable (e.g. a forged report): give it up.
            await self.give_up(sub, delivery, data, _Refusal(exc.code, exc.message, event))
            return
        except Exception:
            # Left pending: the claim loop brings it back after `claim_idle_ms`, and the
            # delivery limit ends the loop for an entry that always fails.
            log.exception(
                "handler for %s entry %s failed (delivery %d); left pending",
                sub.stream,
                delivery.entry_id,
                delivery.deliveries,
            )
            await self._forget(sub, seen, token)
            return
        if delivery.acked and result is None and not sub.dedupe:
            return

        def finish(pipe: Any) -> None:
            _publish_result(pipe, sub, result)
            if sub.dedupe:
                pipe.set(seen, b"done", ex=SEEN_TTL_S)
            if not delivery.acked:
                pipe.xack(sub.stream, sub.group, delivery.entry_id)

        await self.trips.atomic(finish)

    async def _start(self, sub: Subscription, event: Any, seen_key: str, token: str) -> str:
        """One round trip: does the request exist (commands), and is this event new
        (marked as started) or a copy: `unknown`, `done`, `copy` or `go`."""

        # EVALSHA by hand: redis-py's pipelines send SCRIPT EXISTS before every execute
        # for registered scripts (one more round trip each time). Through
        # `execute_command`: a Cluster pipeline blocks its `evalsha` method, not the
        # command (routed by its key like any other).
        def begin(pipe: Any) -> None:
            if sub.request_key is not None:
                pipe.exists(sub.request_key(event))
            if sub.dedupe:
                pipe.execute_command("EVALSHA", self._begin.sha, 1, seen_key, token, SEEN_TTL_S)

        for _ in range(2):
            replies = await self.trips.run(begin)
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
        return as_str(replies[-1]) if sub.dedupe else "go"

    async def _forget(self, sub: Subscription, seen_key: str, token: str) -> None:
        if sub.dedupe:
            try:
                await self._release(keys=[seen_key], args=[token])
            except Exception:
                log.warning("could not release %s (it expires on its own)", seen_key)

    async def give_up(
        self, sub: Subscription, delivery: Delivery, data: Any, refusal: _Refusal
    ) -> None:
        record = DeadLettered(
            stream=sub.stream,
            group=sub.group,
            entry_id=delivery.entry_id,
            reason=refusal.reason,
            detail=refusal.detail[:2000],
            deliveries=delivery.deliveries,
            data=escaped_text(data)[:DEADLETTER_DATA_MAX],
        )
        also: tuple[str, BaseModel] | None = None
        if sub.on_deadletter is not None and refusal.event is not None:
            try:
                report = sub.on_deadletter(refusal.event, record)
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


def _publish_result(pipe: Any, sub: Subscription, result: BaseModel | None) -> None:
    if result is None or sub.publishes is None:
        return
    pipe.xadd(sub.publishes, entry_fields(result))
    if sub.announce is not None:
        pipe.publish(*sub.announce)


def _try_decode(data: Any) -> Any:
    try:
        return decode_event(data)
    except (ValidationError, UnicodeDecodeError):
        return None
