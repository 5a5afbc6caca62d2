"""Asking the workers what an offboarding would find, changing nothing.

The orchestrator knows the hosts with a session (the presence index) but not the M365
identity (the m365-worker resolves it through Graph) nor the SSO sessions (the ent-worker
asks the CAS): so a preview publishes `preview.requested`, which each worker answers on
`preview.answered` with a report of no step and its discovery (read-only lookups), and
this replica reads the answers for its own preview id for up to `wait_s` (XREAD, no
consumer group: any replica may ask). A worker that does not answer in time is reported
unanswered; one whose consumer group does not exist (it never started) is not waited for.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import (
    Discovery,
    PreviewRequested,
    RevocationCompleted,
    Subject,
    Target,
    decode_event,
)

# A worker that takes the command later than this finds no preview key and drops it.
KEY_TTL_S = 60
_WORKERS = {Target.M365: "m365", Target.ENT: "ent"}
_GROUPS = {"m365": streams.GROUP_M365, "ent": streams.GROUP_ENT}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _listening(redis: Redis) -> set[str]:
    """The workers whose consumer group reads previews (a worker creates it when it
    starts): one that never ran is not waited for."""
    try:
        groups: Any = await redis.xinfo_groups(streams.PREVIEW_REQUESTED)
    except ResponseError:
        return set()  # no such stream: no worker ever started
    names = {_text(g["name"]) for g in groups}
    return {worker for worker, group in _GROUPS.items() if group in names}


async def _last_id(redis: Redis) -> str:
    last: Any = await redis.xrevrange(streams.PREVIEW_ANSWERED, count=1)
    return _text(last[0][0]) if last else "0-0"


def _answer(fields: Any, preview_id: uuid.UUID) -> RevocationCompleted | None:
    if _text(fields.get(b"request_id", b"")) != str(preview_id):
        return None
    try:
        event = decode_event(fields[b"data"])
    except (KeyError, ValidationError):
        return None
    if isinstance(event, RevocationCompleted) and event.discovery is not None:
        return event
    return None


async def ask_workers(
    redis: Redis, subject: Subject, targets: list[Target], wait_s: float
) -> tuple[uuid.UUID, dict[str, Discovery | None]]:
    """Each targeted worker's discovery for `subject` (None: no answer within `wait_s`)."""
    preview_id = uuid.uuid4()
    targeted = {_WORKERS[t] for t in targets if t in _WORKERS}
    answers: dict[str, Discovery | None] = dict.fromkeys(sorted(targeted))
    wanted = targeted & await _listening(redis)
    if not wanted:
        return preview_id, answers
    await redis.set(streams.preview_key(preview_id), "1", ex=KEY_TTL_S)
    since = await _last_id(redis)
    command = PreviewRequested(request_id=preview_id, subject=subject, targets=tuple(targets))
    await publish(redis, streams.PREVIEW_REQUESTED, command)
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_s
    try:
        while wanted and (left := until - loop.time()) > 0:
            got: Any = await redis.xread(
                {streams.PREVIEW_ANSWERED: since},
                count=100,
                # At most 5 s a read: below the client's read timeout (runtime.py).
                block=max(1, int(min(left, 5.0) * 1000)),
            )
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    since = _text(entry_id)
                    answer = _answer(fields, preview_id)
                    if answer is not None and answer.service in wanted:
                        answers[answer.service] = answer.discovery
                        wanted.discard(answer.service)
    finally:
        await redis.delete(streams.preview_key(preview_id))
    return preview_id, answers


class WorkerPreviews:
    """`ask_workers` on the orchestrator's Redis (built in bootstrap.py)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def ask(
        self, subject: Subject, targets: list[Target], wait_s: float
    ) -> tuple[uuid.UUID, dict[str, Discovery | None]]:
        return await ask_workers(self.redis, subject, targets, wait_s)
