"""Outbox and relay for Redis Cluster (issue 19, item 2; DESIGN.md "on Redis Cluster the
stream lives in another slot: there the event goes to an outbox in the request's slot and
a relay moves it on"). Wired in by the orchestrator's `saga_cluster.ClusterSagaStore`,
and run by every orchestrator replica on a Cluster.

* A script that must publish to a shared stream (`logout.requested`, ...) appends the
  entry instead to `outbox_key(request_id)`, a stream in the request's own slot, with the
  target stream in the field `stream`: one slot, so the script stays atomic on Cluster.
* `Relay` (any number of them, any replica: one consumer group `relay` per outbox stream)
  moves each outbox entry to its stream exactly once: the copy is written by a script in
  the *target's* slot together with a mark `{<stream>}:relayed:<outbox>:<entry id>`
  (the hash tag `{<stream>}` puts the mark in the stream's slot), so a relay that dies
  after the copy and before its XACK, or two relays holding one entry after a claim, copy
  it once. The outbox entry is then acknowledged and deleted.
* Outbox streams are found without scanning: requests should get ids whose slot is one
  of `OUTBOX_SLOTS` (`new_request_id`), whose outboxes every relay polls; any other
  outbox (ids made otherwise) is found by a SCAN every `discover_interval_s`.
* One pass reads every outbox in one pipeline (redis-py's cluster pipeline sends one
  batch per primary), and claims what a dead relay held every `claim_idle_ms / 2`.
* With `durable_replicas`, each copy is followed by WAIT on its primary's connection
  before the outbox entry is deleted: a failover cannot lose a copy whose original is
  gone. A primary left without a replica (after a failover) is not waited for, for
  `DEGRADED_RETRY_S` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ResponseError

from . import tasks
from .redis_cluster import is_cluster, relearn, run_then_wait_on_slot

log = logging.getLogger(__name__)

# A relay pass taking longer than this is given up and started again.
PASS_TIMEOUT_S = 30.0

OUTBOX_PREFIX = "sortie:outbox:"
RELAY_GROUP = "relay"
# Every 256th slot (64 slots): spread evenly over the primaries (a cluster of up to 64
# primaries can hold one each), few enough for every replica to poll their outboxes and
# deadlines sets several times a second (bench/e2e.py --cluster: 256 slots cost ~50
# Redis commands per request in polling alone).
OUTBOX_SLOTS = tuple(range(0, REDIS_CLUSTER_HASH_SLOTS, 256))
_OUTBOX_SLOT_SET = frozenset(OUTBOX_SLOTS)
# A mark outlives any entry a relay may still hold (claimed after `claim_idle_ms`); an
# entry older still would be copied again, and its consumers de-duplicate on event_id.
MARK_TTL_S = 24 * 3600
DEGRADED_RETRY_S = 5.0

# KEYS[1] the target stream, KEYS[2] the mark (same slot); ARGV: ttl, then field/value pairs.
_COPY = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
  return 1
end
return 0
"""


def slot_of(request_id: object) -> int:
    return int(key_slot(str(request_id).encode()))


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every slot, the first hex number whose slot it is (~170,000 hashes, once)."""
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing = REDIS_CLUSTER_HASH_SLOTS
    for n in itertools.count():
        tag = format(n, "x")
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
            if not missing:
                return tuple(t or "" for t in tags)
    raise AssertionError("unreachable")


def slot_tag(slot: int) -> str:
    """A short hash tag whose slot is `slot`."""
    return _slot_tags()[slot]


def outbox_key(request_id: object) -> str:
    """The outbox stream in the slot of the request's keys (`...{request_id}`)."""
    return f"{OUTBOX_PREFIX}{{{slot_tag(slot_of(request_id))}}}"


def new_request_id() -> uuid.UUID:
    """A random id whose slot has a polled outbox (256 draws on average, ~0.5 ms)."""
    while True:
        rid = uuid.uuid4()
        if slot_of(rid) in _OUTBOX_SLOT_SET:
            return rid


def outbox_fields(stream: str, fields: dict[str, str]) -> dict[str, str]:
    """What a script appends to the outbox for an entry of `stream`."""
    return {"stream": stream, **fields}


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Relay:
    """Moves outbox entries to their streams; `redis` is a `RedisCluster` (or a `Redis`:
    on one Redis it works the same, for tests and migrations)."""

    def __init__(
        self,
        redis: Any,
        consumer: str,
        *,
        batch: int = 100,
        claim_idle_ms: int = 15_000,
        discover_interval_s: float = 5.0,
        parallel: int = 8,
        durable_replicas: int = 0,
        durable_timeout_ms: int = 1000,
    ) -> None:
        self.parallel = parallel
        self.redis = redis
        self.consumer = consumer
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.discover_interval_s = discover_interval_s
        self.durable_replicas = durable_replicas
        self.durable_timeout_ms = durable_timeout_ms
        self.outboxes = {f"{OUTBOX_PREFIX}{{{slot_tag(s)}}}" for s in OUTBOX_SLOTS}
        self._grouped: set[str] = set()
        self._next_claim = float("-inf")
        # Primaries whose WAIT fell short: copies there skip WAIT until then (monotonic s).
        self._degraded: dict[str, float] = {}
        self._copy = redis.register_script(_COPY)

    async def group(self, outbox: str) -> None:
        if outbox in self._grouped:
            return
        with contextlib.suppress(ResponseError):  # BUSYGROUP: there already
            await self.redis.xgroup_create(outbox, RELAY_GROUP, id="0", mkstream=True)
        self._grouped.add(outbox)

    async def discover(self) -> None:
        """Outboxes of requests whose ids were not drawn by `new_request_id`."""
        pattern = f"{OUTBOX_PREFIX}*"
        async for key in self.redis.scan_iter(match=pattern, count=1000, _type="STREAM"):
            self.outboxes.add(_s(key))

    async def copy(self, outbox: str, entry_id: Any, raw: dict[Any, Any]) -> int:
        """Write one outbox entry to its stream unless it was already (1: written now)."""
        fields = {_s(k): _s(v) for k, v in raw.items()}
        stream = fields.pop("stream", "")
        if not stream:
            log.warning("outbox %s entry %s names no stream: dropped", outbox, _s(entry_id))
            return 0
        mark = f"{{{stream}}}:relayed:{outbox}:{_s(entry_id)}"
        args: list[Any] = [MARK_TTL_S, *itertools.chain(*fields.items())]
        if self.durable_replicas and is_cluster(self.redis):
            node = self.redis.get_node_from_key(stream).name
            if self._degraded.get(node, 0.0) <= time.monotonic():
                copied, acked = await run_then_wait_on_slot(
                    self.redis,
                    self._copy,
                    [stream, mark],
                    args,
                    replicas=self.durable_replicas,
                    timeout_ms=self.durable_timeout_ms,
                )
                if acked < self.durable_replicas:
                    # No replica to wait for (its own died, or is resyncing): waiting
                    # would only slow every copy down; asked again after a while.
                    self._degraded[node] = time.monotonic() + DEGRADED_RETRY_S
                return int(copied)
        return int(await self._copy(keys=[stream, mark], args=args))

    async def move(self, outbox: str, entries: Iterable[tuple[Any, dict[Any, Any]]]) -> int:
        """Copy each entry once to its stream, then acknowledge and delete it."""
        moved = 0
        for entry_id, raw in entries:
            moved += await self.copy(outbox, entry_id, raw)
            await self.redis.xack(outbox, RELAY_GROUP, entry_id)
            await self.redis.xdel(outbox, entry_id)
        return moved

    async def relay_outbox(self, outbox: str) -> int:
        await self.group(outbox)
        moved = 0
        # Entries a dead relay held, then new ones.
        claimed = await self.redis.xautoclaim(
            outbox, RELAY_GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        moved += await self.move(outbox, claimed[1])
        read = await self.redis.xreadgroup(
            RELAY_GROUP, self.consumer, {outbox: ">"}, count=self.batch
        )
        for _stream, entries in read or []:
            moved += await self.move(outbox, entries)
        return moved

    def _read(self, pipe: Any, outbox: str) -> None:
        """XREADGROUP of `outbox`'s new entries. On a Cluster sent to the slot's primary
        by hand: redis-py asks the server (COMMAND GETKEYS, one more round trip) where a
        command with movable keys such as XREADGROUP goes."""
        if not is_cluster(self.redis):
            pipe.xreadgroup(RELAY_GROUP, self.consumer, {outbox: ">"}, count=self.batch)
            return
        pipe.execute_command(
            "XREADGROUP",
            *("GROUP", RELAY_GROUP, self.consumer, "COUNT", self.batch, "STREAMS", outbox, ">"),
            target_nodes=self.redis.get_node_from_key(outbox),
        )

    async def relay_once(self) -> int:
        """One pass over every known outbox: their new entries (and, when due, those a
        dead relay held) read in one pipeline, then moved `parallel` outboxes at a time;
        how many entries reached their stream."""
        outboxes = sorted(self.outboxes)
        for outbox in outboxes:
            if outbox not in self._grouped:
                await self.group(outbox)
        claim = time.monotonic() >= self._next_claim
        if claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
        async with self.redis.pipeline(transaction=False) as pipe:
            for outbox in outboxes:
                if claim:
                    pipe.xautoclaim(
                        outbox,
                        RELAY_GROUP,
                        self.consumer,
                        self.claim_idle_ms,
                        "0-0",
                        count=self.batch,
                    )
                self._read(pipe, outbox)
            replies = await pipe.execute(raise_on_error=False)
        work: dict[str, list[Any]] = {}
        step = 2 if claim else 1
        for i, outbox in enumerate(outboxes):
            for reply in replies[i * step : (i + 1) * step]:
                if isinstance(reply, Exception):
                    self._grouped.discard(outbox)  # NOGROUP after a data loss, or a failover
                    # Sent to the slot's primary by hand (`_read`): after a failover that
                    # is a dead node until the client learns the layout again.
                    relearn(self.redis)
                    continue
                if isinstance(reply, list) and len(reply) >= 2 and not isinstance(reply[0], list):
                    work.setdefault(outbox, []).extend(reply[1])  # XAUTOCLAIM
                else:
                    for _stream, entries in reply or []:
                        work.setdefault(outbox, []).extend(entries)
        gate = asyncio.Semaphore(self.parallel)

        async def one(outbox: str, entries: list[Any]) -> int:
            async with gate:
                return await self.move(outbox, entries)

        return sum(await asyncio.gather(*(one(o, e) for o, e in work.items() if e)))

    async def run(self, poll_s: float = 0.02, idle_max_s: float = 0.2) -> None:
        """Relay until cancelled; polls faster while there is work."""
        loop = asyncio.get_running_loop()
        next_discovery = 0.0
        pause = poll_s
        while True:
            try:
                async with asyncio.timeout(PASS_TIMEOUT_S):
                    if loop.time() >= next_discovery:
                        # Inside the guard: a failover's ConnectionError here ended the
                        # relay for good (CI: 276 events left in their outboxes).
                        await self.discover()
                        next_discovery = loop.time() + self.discover_interval_s
                    moved = await self.relay_once()
            except TimeoutError:
                # Every event of the Cluster goes through here: a pass that hangs on a
                # lost reply must not stop them all (CI: a primary killed under load).
                log.warning(
                    "outbox relay pass unfinished after %s s; started again", PASS_TIMEOUT_S
                )
                moved = 0
            except Exception:
                log.exception("outbox relay pass failed; trying again")
                moved = 0
            pause = poll_s if moved else min(idle_max_s, pause * 2)
            await tasks.pause(pause)
