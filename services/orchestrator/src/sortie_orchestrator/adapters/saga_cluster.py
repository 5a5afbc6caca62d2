"""Saga state on Redis Cluster (`SORTIE_REDIS_CLUSTER=1`): `SagaStore`'s contract with
scripts that touch only the request's own slot (docs/high-availability.md).

* The request, its SSO credentials, its deadline and its outgoing events are written by one
  script in the slot of `{request_id}`: the deadline goes to the deadlines set of that
  slot (`sortie:deadlines:{<tag>}`, `outbox.slot_tag`), the events to the slot's outbox
  (`outbox.outbox_key`), which the relay moves to their streams exactly once. So
  "accept = state + first event" and "every transition one compare-and-set" still hold.
* Request ids are drawn in the relay's polled slots (`outbox.new_request_id`); every
  replica polls the deadlines sets of those slots (and of any other slot a SCAN finds).
* Idempotency-Key: its key lives in its own slot, so it is reserved first (SET NX, the
  request's id and body fingerprint), then the request is written. A repeat that finds a
  reservation whose request does not exist answers 503 (retry) while the reservation is
  younger than `reservation_grace_s`, and takes it over after (its first attempt died
  between the two writes).
* The listing indexes and the in-flight set (other slots) are written after the script:
  a crash in between leaves a request out of the listing, never a request without its
  events. Entries of a report are acknowledged after its commit: a crash in between
  means one more delivery, which the saga ignores (the service already reported).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sortie_core.broker import Delivery
from sortie_core.credentials import credentials_key
from sortie_core.entries import as_str
from sortie_core.outbox import OUTBOX_SLOTS, new_request_id, outbox_key, slot_of, slot_tag
from sortie_core.redis_cluster import run_then_wait_on_slot
from sortie_orchestrator.saga import Transition, phases

from . import doc_codec
from .saga_index import SagaIndex
from .saga_store import (
    FOLLOWUPS,
    REQUESTS,
    Conflict,
    IdempotencyMismatch,
    Loaded,
    NotDurable,
    SagaStore,
    _messages_json,
    _score,
    active_key,
    idem_key,
    req_key,
    subject_key,
)

DEADLINES_PREFIX = "sortie:deadlines:"

_OUT = (
    "redis.call('XADD', KEYS[4], '*', 'stream', m[1], 'type', m[2], 'event_id', m[3],"
    " 'request_id', m[4], 'data', m[5])"
)

_CREATE = f"""
-- KEYS: req, deadlines (the slot's), credentials, outbox (all in the request's slot)
-- ARGV: rid, doc, deadline ('' = none), messages (JSON), credentials ('' = none), ttl
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', 1)
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', tonumber(ARGV[6])) end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
for _, m in ipairs(cjson.decode(ARGV[4])) do {_OUT} end
return 1
"""

_COMMIT = f"""
-- KEYS: req, deadlines (the slot's), credentials, outbox
-- ARGV: rid, expected version, doc, deadline ('' = none), finished ('1'/'0'),
--       retention seconds, messages (JSON), forget credentials ('1'/'0')
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if tonumber(v) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'v', tonumber(v) + 1)
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
if ARGV[5] == '1' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6])) end
for _, m in ipairs(cjson.decode(ARGV[7])) do {_OUT} end
if ARGV[8] == '1' then redis.call('DEL', KEYS[3]) end
return 1
"""

# KEYS: idem; ARGV: value ('<rid> <fingerprint>'), ttl. The first request's value and its
# remaining ms, or nil after reserving the key for this one.
_RESERVE = """
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return false
"""

# KEYS: idem; ARGV: the value found, this request's value, ttl.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def deadlines_key(request_id: uuid.UUID | str) -> str:
    """The deadlines set of the request's slot."""
    return f"{DEADLINES_PREFIX}{{{slot_tag(slot_of(request_id))}}}"


class ClusterSagaStore(SagaStore):
    """`SagaStore` on a `RedisCluster` client."""

    def __init__(self, redis: Any, *args: Any, reservation_grace_s: float = 5.0, **kw: Any):
        super().__init__(redis, *args, **kw)
        self.reservation_grace_s = reservation_grace_s
        self._create = redis.register_script(_CREATE)
        self._commit = redis.register_script(_COMMIT)
        self._reserve = redis.register_script(_RESERVE)
        self._take_over = redis.register_script(_TAKE_OVER)
        self.deadline_keys = {f"{DEADLINES_PREFIX}{{{slot_tag(s)}}}" for s in OUTBOX_SLOTS}

    # -- accepting ------------------------------------------------------------------------
    async def create(
        self,
        transition: Transition,
        idempotency_key: str | None,
        principal: str,
        fingerprint: str = "",
        progress: tuple[str, int] | None = None,
    ) -> tuple[bool, uuid.UUID]:
        state = transition.state
        rid = str(state.request_id)
        if idempotency_key:
            idem = idem_key(idempotency_key, principal)
            first = await self._reserve_key(idem, f"{rid} {fingerprint}")
            if first is not None:
                return await self._repeat(first, fingerprint, progress)
        keys = [req_key(rid), deadlines_key(rid), credentials_key(rid), outbox_key(rid)]
        args: list[Any] = [
            rid,
            doc_codec.encode(state),
            _score(state.next_deadline()),
            _messages_json(transition),
            state.sso_session.model_dump_json() if state.sso_session else "",
            self.credentials_ttl_s,
        ]
        # The id is new to this call: an existing request (0) is this call's own write,
        # run again after a stale slot map (`run_then_wait_on_slot`).
        if self.durable_replicas:
            _created, acked = await run_then_wait_on_slot(
                self.redis,
                self._create,
                keys,
                args,
                replicas=self.durable_replicas,
                timeout_ms=self.durable_timeout_ms,
            )
        else:
            _created, acked = await self._create(keys=keys, args=args), 0
        score = int(state.created_at.timestamp() * 1_000_000)
        async with self.redis.pipeline() as pipe:
            pipe.zadd(REQUESTS, {rid: score})
            pipe.zadd(subject_key(state.subject.user_id), {rid: score})
            pipe.sadd(active_key(state.kind.value), rid)
            if progress:
                pipe.set(progress[0], rid, ex=progress[1])
            await pipe.execute()
        if acked < self.durable_replicas:
            raise NotDurable(
                f"NOREPLICAS {acked} of {self.durable_replicas} replicas acknowledged in time"
            )
        return True, state.request_id

    async def _reserve_key(self, idem: str, value: str) -> str | None:
        """None when `idem` is now this request's; else the first request's value."""
        for _ in range(3):
            got = await self._reserve(keys=[idem], args=[value, self.idempotency_ttl_s])
            if not got:
                return None
            existing, left_ms = as_str(got[0]), int(got[1])
            if await self.redis.exists(req_key(existing.partition(" ")[0])):
                return existing
            age_s = self.idempotency_ttl_s - left_ms / 1000
            if age_s < self.reservation_grace_s:
                # TRYAGAIN: the intake's 503 (http/problems.py), as Redis's own word for it.
                raise NotDurable(
                    "TRYAGAIN the first request with this Idempotency-Key is being accepted"
                )
            if await self._take_over(keys=[idem], args=[existing, value, self.idempotency_ttl_s]):
                return None
        raise NotDurable("TRYAGAIN the Idempotency-Key is contended")

    async def _repeat(
        self, first: str, fingerprint: str, progress: tuple[str, int] | None
    ) -> tuple[bool, uuid.UUID]:
        rid_s, _, first_fp = first.partition(" ")
        if first_fp and fingerprint and first_fp != fingerprint:
            raise IdempotencyMismatch(rid_s)
        if progress:
            await self.redis.set(progress[0], rid_s, ex=progress[1])
        return False, uuid.UUID(rid_s)

    # -- transitions ----------------------------------------------------------------------
    async def commit(
        self, loaded: Loaded, transition: Transition, ack: Delivery | None = None
    ) -> None:
        state = transition.state
        rid = str(state.request_id)
        forget = state.sso_session is None and loaded.had_sso
        result = await self._commit(
            keys=[req_key(rid), deadlines_key(rid), credentials_key(rid), outbox_key(rid)],
            args=[
                rid,
                loaded.version,
                doc_codec.encode(state),
                _score(state.next_deadline()),
                "1" if state.finished else "0",
                self.retention_s + phases.keep_s(state.phases),
                _messages_json(transition),
                "1" if forget else "0",
            ],
        )
        if int(result) != 1:
            raise Conflict(rid)
        if state.finished and not loaded.was_finished:
            await self.redis.srem(active_key(state.kind.value), rid)  # type: ignore[misc]
        if ack is not None:
            await self.redis.xack(ack.stream, ack.group, ack.entry_id)  # type: ignore[no-untyped-call]
            ack.acked = True
        if state.followups:
            await self.redis.hset(FOLLOWUPS, rid, ",".join(sorted(state.followups)))  # type: ignore[misc]
        elif loaded.had_followups:
            await self.redis.hdel(FOLLOWUPS, rid)  # type: ignore[misc]

    # -- deadlines ------------------------------------------------------------------------
    async def discover(self) -> None:
        """Deadlines sets of slots outside the polled ones (ids made elsewhere)."""
        pattern = f"{DEADLINES_PREFIX}*"
        async for key in self.redis.scan_iter(match=pattern, count=1000, _type="ZSET"):
            self.deadline_keys.add(as_str(key))

    async def due(self, now: datetime, limit: int = 200) -> list[str]:
        keys = sorted(self.deadline_keys)
        async with self.redis.pipeline() as pipe:
            for key in keys:
                pipe.zrangebyscore(key, "-inf", now.timestamp(), 0, limit)
            replies = await pipe.execute()
        return [as_str(i) for ids in replies for i in ids][: limit * 4]


class ClusterSagaIndex(SagaIndex):
    """`SagaIndex` over the deadlines sets of every slot the store polls."""

    def __init__(self, redis: Any, store: ClusterSagaStore) -> None:
        super().__init__(redis)
        self.store = store

    def new_id(self) -> uuid.UUID:
        return new_request_id()

    async def discover(self) -> None:
        await self.store.discover()

    async def forget_deadline(self, request_id: str) -> None:
        await self.redis.zrem(deadlines_key(request_id), request_id)

    async def overdue(self, before: datetime) -> int:
        async with self.redis.pipeline() as pipe:
            for key in sorted(self.store.deadline_keys):
                pipe.zcount(key, "-inf", before.timestamp())
            return sum(int(n) for n in await pipe.execute())
