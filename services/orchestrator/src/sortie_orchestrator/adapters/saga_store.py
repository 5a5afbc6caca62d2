"""Saga state in Redis: every transition is one atomic compare-and-set that also publishes
its messages, so a crash can leave neither a state without its event nor an event without
its state, and of two replicas racing on one request exactly one wins.

Keys (the `{request_id}` hash tag keeps one request's keys in one Cluster slot):

    sortie:req:{<id>}            hash: doc (SagaState; compacted when finished), v (version)
    sortie:deadlines             zset: request id -> next deadline (epoch s), polled by all
    sortie:requests              zset: request id -> created (epoch µs), newest-first listing
    sortie:requests:subject:<u>  zset: the same, per subject
    sortie:active:<kind>         set: requests not finished (the in-flight gauge)
    sortie:idem:<sha256>         string: Idempotency-Key -> request id
    sortie:cred:{<id>}           string: the request's SSO session (TGT, tickets), read
                                 by the ent-worker only, deleted when no longer needed
    sortie:followups             hash: request id -> services with a follow-up pending
                                 (for the gauge only: the schedule is in the state)

On Redis Cluster `saga_cluster.ClusterSagaStore` sends a transition's messages to an
outbox in the request's slot instead, moved on by the relay (`sortie_core.outbox`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from sortie_core.broker import Delivery, entry_fields, request_key
from sortie_core.coalesce import coalescer_for
from sortie_core.credentials import credentials_key
from sortie_core.errors import RefusedError
from sortie_core.redis_conn import run_then_wait
from sortie_orchestrator.saga import SagaState, Transition, phases

from . import doc_codec
from .saga_cursor import decode_cursor, encode_cursor
from .saga_kept import KeptDocs
from .saga_scripts import COMMIT, CREATE

DEADLINES = "sortie:deadlines"
REQUESTS = "sortie:requests"
FOLLOWUPS = "sortie:followups"


def req_key(request_id: uuid.UUID | str) -> str:
    return request_key(request_id)


def active_key(kind: str) -> str:
    return f"sortie:active:{kind}"


def subject_key(user_id: str) -> str:
    return f"sortie:requests:subject:{user_id}"


def idem_key(idempotency_key: str | None, principal: str) -> str:
    if not idempotency_key:
        return "sortie:idem:"
    digest = hashlib.sha256(f"{principal}\x00{idempotency_key}".encode()).hexdigest()
    return f"sortie:idem:{digest}"


def _score(dt: datetime | None) -> str:
    return "" if dt is None else repr(dt.timestamp())


def _messages_json(transition: Transition) -> str:
    out = []
    for m in transition.messages:
        f = entry_fields(m.event)
        out.append([m.stream, f["type"], f["event_id"], f["request_id"], f["data"]])
    return json.dumps(out)


@dataclass(frozen=True, slots=True)
class Loaded:
    state: SagaState
    version: int
    # What the commit compares with, read before a transition may reuse `state`.
    had_sso: bool
    had_followups: bool
    was_finished: bool

    @classmethod
    def of(cls, state: SagaState, version: int) -> Loaded:
        return cls(
            state,
            version,
            had_sso=state.sso_session is not None,
            had_followups=bool(state.followups),
            was_finished=state.finished,
        )


class NotDurable(ResponseError):
    """The request is written on the primary but not on enough replicas yet."""


class Conflict(Exception):
    """Another replica changed the request first."""


class IdempotencyMismatch(Exception):
    """An Idempotency-Key already used for a request with another body."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


class SagaStore:
    def __init__(
        self,
        redis: Redis,
        retention_s: int,
        idempotency_ttl_s: int,
        *,
        durable_replicas: int = 0,
        durable_timeout_ms: int = 1000,
        credentials_ttl_s: int = 26 * 3600,
        cache_size: int = 4096,
    ) -> None:
        self.redis = redis
        # Round trips shared with the process's other callers (sortie_core.coalesce).
        self.trips = coalescer_for(redis)
        self._docs = KeptDocs(cache_size)
        # The SSO credentials' key outlives no follow-up (24 h horizon by default): it is
        # deleted when the request no longer needs them, this is only the backstop.
        self.credentials_ttl_s = credentials_ttl_s
        # Before a 202: WAIT until this many replicas hold the write (0: no wait; then
        # durability is what the server's `appendfsync` gives, see docs/runbook.md).
        self.durable_replicas = durable_replicas
        self.durable_timeout_ms = durable_timeout_ms
        self.retention_s = retention_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self._create = redis.register_script(CREATE)
        self._commit = redis.register_script(COMMIT)

    async def create(
        self,
        transition: Transition,
        idempotency_key: str | None,
        principal: str,
        fingerprint: str = "",
        progress: tuple[str, int] | None = None,
    ) -> tuple[bool, uuid.UUID]:
        """Persist a new request and publish its first messages atomically (with
        `progress`, a link's key and time to live: that link names the request).

        Returns (created, request_id): with an Idempotency-Key already used, the first
        request's id and False. Raises `IdempotencyMismatch` when that first request had
        another `fingerprint` (a digest of its body): replaying it would silently drop
        this one.
        """
        state = transition.state
        doc = doc_codec.encode(state)
        (created, rid), acked = await self._run_create(
            keys=[
                req_key(state.request_id),
                DEADLINES,
                REQUESTS,
                subject_key(state.subject.user_id),
                active_key(state.kind.value),
                idem_key(idempotency_key, principal),
                credentials_key(state.request_id),
                *([progress[0]] if progress else []),
            ],
            args=[
                str(state.request_id),
                doc,
                _score(state.next_deadline()),
                repr(int(state.created_at.timestamp() * 1_000_000)),
                self.idempotency_ttl_s,
                _messages_json(transition),
                fingerprint,
                state.sso_session.model_dump_json() if state.sso_session else "",
                self.credentials_ttl_s,
                *([progress[1]] if progress else []),
            ],
        )
        stored = rid.decode() if isinstance(rid, bytes) else str(rid)
        rid_s, _, first = stored.partition(" ")
        if not created and first and fingerprint and first != fingerprint:
            raise IdempotencyMismatch(rid_s)
        if acked < self.durable_replicas:
            # Too few replicas in time: a 503, the client retries with its
            # Idempotency-Key and gets this very request.
            raise NotDurable(
                f"NOREPLICAS {acked} of {self.durable_replicas} replicas acknowledged in time"
            )
        if created:
            self._docs.written(rid_s, 1, doc, state.finished)
        return bool(created), uuid.UUID(rid_s)

    async def _run_create(self, keys: list[Any], args: list[Any]) -> tuple[Any, int]:
        """The create script and, with `durable_replicas`, its WAIT on the same connection
        (WAIT counts what its own connection wrote; on another pooled connection it could
        answer before this write reached any replica)."""
        if not self.durable_replicas:
            return await self.evalsha(self._create, keys, args), 0
        replicas, timeout_ms = self.durable_replicas, self.durable_timeout_ms
        return await run_then_wait(
            self.redis, self._create, keys, args, replicas=replicas, timeout_ms=timeout_ms
        )

    async def evalsha(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """`script` in a shared round trip (loaded again after a Redis restart)."""

        def send(pipe: Any) -> None:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

        try:
            return await self.trips.call(send)
        except NoScriptError:
            await self.redis.script_load(script.script)
            return await self.trips.call(send)

    async def load(self, request_id: uuid.UUID | str) -> Loaded | None:
        key = req_key(request_id)
        raw = await self.trips.call(lambda pipe: pipe.hmget(key, ["doc", "v"]))
        if raw[0] is None:
            return None
        return Loaded.of(doc_codec.decode(raw[0]), int(raw[1] or 0))

    async def _latest(self, request_id: uuid.UUID | str) -> tuple[Loaded | None, bool]:
        """The doc this process last wrote (True), else Redis's (False)."""
        known = self._docs.get(str(request_id))
        if known is not None:
            return Loaded.of(doc_codec.decode(known[1]), known[0]), True
        return await self.load(request_id), False

    async def commit(
        self, loaded: Loaded, transition: Transition, ack: Delivery | None = None
    ) -> None:
        """Compare-and-set; with `ack`, that stream entry is acknowledged in the same
        script (a report then costs two round trips: this and the load)."""
        state = transition.state
        keys = [
            req_key(state.request_id),
            DEADLINES,
            active_key(state.kind.value),
            credentials_key(state.request_id),
        ]
        extra: list[str] = []
        if ack is not None:
            keys.append(ack.stream)
            extra = [ack.group, ack.entry_id]
        rid = str(state.request_id)
        doc = doc_codec.encode(state)
        result = await self.evalsha(
            self._commit,
            keys,
            [
                rid,
                loaded.version,
                doc,
                _score(state.next_deadline()),
                "1" if state.finished else "0",
                self.retention_s + phases.keep_s(state.phases),
                _messages_json(transition),
                "1" if state.sso_session is None and loaded.had_sso else "0",
                *extra,
            ],
        )
        if int(result) != 1:
            self._docs.drop(rid)
            raise Conflict(rid)
        self._docs.written(rid, loaded.version + 1, doc, state.finished)
        if ack is not None:
            ack.acked = True
        if state.followups or loaded.had_followups:
            if state.followups:
                await self.redis.hset(FOLLOWUPS, rid, ",".join(sorted(state.followups)))  # type: ignore[misc]
            else:
                await self.redis.hdel(FOLLOWUPS, rid)  # type: ignore[misc]

    async def followups_pending(self) -> dict[str, int]:
        """Requests with a follow-up pending, per service (hosts counted as `workstation`)."""
        counts: dict[str, int] = {}
        for raw in await self.redis.hvals(FOLLOWUPS):  # type: ignore[misc]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            for name in {n.split(":", 1)[0] for n in text.split(",") if n}:
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def apply(
        self,
        request_id: uuid.UUID | str,
        step: Callable[[SagaState], Transition | None],
        *,
        attempts: int = 20,
        ack: Delivery | None = None,
    ) -> Transition | None:
        """Load, compute, compare-and-set; again on conflict. None: nothing to do.
        With `ack` (a report's delivery), an unknown request is refused
        (`unknown_request`, dead-lettered) and the entry is acknowledged by the commit."""
        for _ in range(attempts):
            loaded, kept = await self._latest(request_id)
            if loaded is None:
                if ack is not None:
                    raise RefusedError(f"no request {request_id}", code="unknown_request")
                return None
            # Decoded for this transition alone: its first copy may be itself.
            loaded.state._spare = True
            transition = step(loaded.state)
            if transition is None:
                if kept:
                    # "Nothing to do" is not proven by a commit: judged again on Redis's
                    # doc (another replica may have moved the request on).
                    self._docs.drop(str(request_id))
                    continue
                return None
            try:
                await self.commit(loaded, transition, ack)
            except Conflict:
                continue
            return transition
        raise Conflict(f"{request_id}: too much contention")

    async def due(self, now: datetime, limit: int = 200) -> list[str]:
        ids: list[Any] = await self.redis.zrangebyscore(
            DEADLINES, "-inf", now.timestamp(), 0, limit
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def in_flight(self, kind: str) -> int:
        return int(await self.redis.scard(active_key(kind)))  # type: ignore[misc]

    async def list(
        self,
        *,
        subject: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[SagaState], str | None]:
        """Newest first; `cursor` continues after the last item of the previous page."""
        index = subject_key(subject) if subject else REQUESTS
        max_score = "+inf"
        after: tuple[int, str] | None = None
        if cursor:
            after = decode_cursor(cursor)
            max_score = str(after[0])
        out: list[SagaState] = []
        scanned = 0
        next_cursor: str | None = None
        while len(out) < limit and scanned < limit * 20:
            batch: list[Any] = await self.redis.zrevrangebyscore(
                index, max_score, "-inf", start=0, num=limit + 50, withscores=True
            )
            if not batch:
                break
            progressed = False
            for member, score in batch:
                rid = member.decode() if isinstance(member, bytes) else str(member)
                sc = int(score)
                if after is not None and (sc > after[0] or (sc == after[0] and rid >= after[1])):
                    continue
                progressed = True
                after = (sc, rid)
                scanned += 1
                loaded = await self.load(rid)
                if loaded is None:
                    # Expired after its retention: drop it from the index on the way.
                    await self.redis.zrem(index, rid)
                    continue
                if status and loaded.state.status != status:
                    continue
                out.append(loaded.state)
                if len(out) >= limit:
                    break
            if not progressed:
                break
            max_score = str(after[0]) if after else max_score
        if len(out) >= limit and after is not None:
            next_cursor = encode_cursor(after)
        return out, next_cursor

    async def trim_indexes(self, now: datetime) -> None:
        cutoff = int((now.timestamp() - self.retention_s) * 1_000_000)
        await self.redis.zremrangebyscore(REQUESTS, "-inf", cutoff)
