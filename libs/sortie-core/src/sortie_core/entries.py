"""Stream entries as Sortie writes and reads them, and the Redis calls around them.

Entries are written as flat fields (`type`, `event_id`, `request_id`, `data` = the JSON
event), readable by any Redis client; the orchestrator's Lua scripts write the same
shape. Dead-letter records go to `deadletter` (or an agent's own stream) with the failed
entry's bytes escaped, never raising on undecodable data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .events import DeadLettered
from .metrics import DEADLETTER_TOTAL
from .redis_cluster import multi
from .streams import DEADLETTER, preview_key

log = logging.getLogger(__name__)

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
    """A preview's command is taken while its preview is awaited (streams.preview_key)."""
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
    entry given up: one MULTI (on a Cluster: in this order, see redis_cluster.multi)."""
    log.warning(
        "dead-lettering %s entry %s for group %s: %s (%s)",
        record.stream,
        record.entry_id,
        record.group,
        record.reason,
        record.detail[:200],
    )
    async with multi(redis) as pipe:
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
        next_start, entries = as_str(result[0]), result[1]
        live = [(as_str(e[0]), e[1]) for e in entries if e[1] is not None]  # None: deleted
        left -= len(entries)
        if live:
            # One XPENDING for the whole range: how often each was delivered.
            pending = await redis.xpending_range(
                stream, group, min=live[0][0], max=live[-1][0], count=len(entries)
            )
            times: dict[str, int] = {
                as_str(p["message_id"]): int(p["times_delivered"])  # type: ignore[arg-type]
                for p in pending
            }
            for entry_id, fields in live:
                yield entry_id, fields, times.get(entry_id, 1)
        if next_start in ("0-0", start) or not entries:
            return
        start = next_start


async def read_new(
    redis: Redis, stream: str, group: str, consumer: str, *, count: int
) -> list[tuple[str, dict[Any, Any]]]:
    """Up to `count` entries of `group` never delivered yet (`>`), without blocking."""
    result: Any = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return [(as_str(e[0]), e[1]) for _name, entries in result or [] for e in entries if e[1]]


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def escaped_text(value: Any) -> str:
    """Entry data for a dead-letter record: undecodable bytes escaped, never raising."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def entry_size(fields: dict[Any, Any]) -> int:
    return sum(len(k) + len(v) for k, v in fields.items() if isinstance(v, bytes | str))


def version_of(data: Any) -> object:
    """The `version` of JSON data that did not decode as an event, or None."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed.get("version") if isinstance(parsed, dict) else None


def short_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {exc}"[:500]
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)
