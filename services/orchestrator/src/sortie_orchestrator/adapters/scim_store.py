"""SCIM resources (Users, Groups) in Redis. Every write is one compare-and-set on the
resource's version (a Lua script) that also keeps the indexes right, so two HR systems
racing on one resource cannot both win, and a name is never given to two resources.

    sortie:scim:user:<id>           hash: doc (JSON resource), v (version)
    sortie:scim:name:<userName>     string: lower-cased userName -> id (uniqueness)
    sortie:scim:ext:<externalId>    set: ids carrying this externalId
    sortie:scim:users               zset: id -> created (epoch µs), the listing order
    sortie:scim:group:<id>, sortie:scim:gname:<displayName>, sortie:scim:gext:<externalId>,
    sortie:scim:groups              the same for Groups
    sortie:scim:memberof:<user id>  set: the ids of the groups the user is a member of

On a Redis Cluster (`SORTIE_REDIS_CLUSTER=1`) the same keys carry the hash tag
`{sortie:scim}` (`{sortie:scim}:user:<id>`, ...): a write's script touches the resource,
its name and externalId indexes, the listing and its members' reverse indexes, so every
SCIM key lies in one slot and the scripts stay whole compare-and-sets. SCIM is a
directory's admin traffic and a few KB per resource: one primary carries it. One Redis
and Sentinel keep the names above (no migration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from sortie_core.redis_cluster import is_cluster

_PUT = """
-- KEYS: doc, name_new, name_old, ext_old, ext_new, listing, then member sets to leave,
--       then member sets to join
-- ARGV: id, doc, expected version ('' = create), created score, ext prefix, n_leave
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[3] == '' then
  if v then return -3 end
else
  if not v then return -1 end
  if v ~= ARGV[3] then return 0 end
end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return -2 end
if KEYS[3] ~= KEYS[2] then redis.call('DEL', KEYS[3]) end
redis.call('SET', KEYS[2], ARGV[1])
if KEYS[4] ~= ARGV[5] then redis.call('SREM', KEYS[4], ARGV[1]) end
if KEYS[5] ~= ARGV[5] then redis.call('SADD', KEYS[5], ARGV[1]) end
local leave = tonumber(ARGV[6])
for i = 7, #KEYS do
  if i < 7 + leave then redis.call('SREM', KEYS[i], ARGV[1])
  else redis.call('SADD', KEYS[i], ARGV[1]) end
end
local nv = (tonumber(v) or 0) + 1
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', nv)
redis.call('ZADD', KEYS[6], 'NX', ARGV[4], ARGV[1])
return nv
"""

_DELETE = """
-- KEYS: doc, name, ext, listing, then member sets to leave   ARGV: id, version, ext prefix
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if KEYS[3] ~= ARGV[3] then redis.call('SREM', KEYS[3], ARGV[1]) end
redis.call('ZREM', KEYS[4], ARGV[1])
for i = 5, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
return 1
"""


class Taken(Exception):
    """The name belongs to another resource."""


class Stale(Exception):
    """The resource changed (or vanished) since it was read."""


@dataclass(frozen=True, slots=True)
class Stored:
    doc: dict[str, Any]
    version: int

    @property
    def id(self) -> str:
        return str(self.doc["id"])


@dataclass(frozen=True, slots=True)
class Kind:
    """Where one resource type lives; `name` is its unique attribute."""

    prefix: str
    name_prefix: str
    ext_prefix: str
    listing: str
    name: str

    def on_one_slot(self) -> Kind:
        """The same names under the hash tag `{sortie:scim}` (for a Cluster)."""
        return Kind(
            _tagged(self.prefix),
            _tagged(self.name_prefix),
            _tagged(self.ext_prefix),
            _tagged(self.listing),
            self.name,
        )


def _tagged(name: str) -> str:
    return name.replace("sortie:scim:", "{sortie:scim}:", 1)


USERS = Kind(
    "sortie:scim:user:", "sortie:scim:name:", "sortie:scim:ext:", "sortie:scim:users", "userName"
)
GROUPS = Kind(
    "sortie:scim:group:",
    "sortie:scim:gname:",
    "sortie:scim:gext:",
    "sortie:scim:groups",
    "displayName",
)
MEMBER_OF = "sortie:scim:memberof:"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def member_ids(doc: dict[str, Any]) -> set[str]:
    return {str(m["value"]) for m in doc.get("members") or [] if m.get("value")}


class ScimStore:
    def __init__(self, redis: Redis, kind: Kind) -> None:
        self.redis = redis
        self.kind = kind.on_one_slot() if is_cluster(redis) else kind
        self.member_of = _tagged(MEMBER_OF) if is_cluster(redis) else MEMBER_OF
        self._put = redis.register_script(_PUT)
        self._delete = redis.register_script(_DELETE)

    def _key(self, rid: str) -> str:
        return self.kind.prefix + rid

    def _name(self, doc: dict[str, Any]) -> str:
        return self.kind.name_prefix + str(doc[self.kind.name]).lower()

    def _ext(self, doc: dict[str, Any] | None) -> str:
        return self.kind.ext_prefix + str((doc or {}).get("externalId") or "")

    async def get(self, rid: str) -> Stored | None:
        if len(rid) > 64:
            return None
        raw = await self.redis.hmget(self._key(rid), ["doc", "v"])  # type: ignore[misc]
        if raw[0] is None:
            return None
        return Stored(json.loads(raw[0]), int(_text(raw[1])))

    async def put(self, doc: dict[str, Any], before: Stored | None, created_us: int) -> int:
        """Create (before None) or replace `before`; returns the new version. A group's
        members' reverse index (`memberof`) moves with it."""
        rid = str(doc["id"])
        old, new = member_ids(before.doc) if before else set(), member_ids(doc)
        leave, join = sorted(old - new), sorted(new - old)
        keys = [
            self._key(rid),
            self._name(doc),
            self._name(before.doc if before else doc),
            self._ext(before.doc if before else None),
            self._ext(doc),
            self.kind.listing,
            *(self.member_of + m for m in leave),
            *(self.member_of + m for m in join),
        ]
        args: list[str | int] = [
            rid,
            json.dumps(doc),
            "" if before is None else str(before.version),
            created_us,
            self.kind.ext_prefix,
            len(leave),
        ]
        result = int(await self._put(keys=keys, args=args))
        if result == -2:
            raise Taken(doc[self.kind.name])
        if result <= 0:
            raise Stale(rid)
        return result

    async def delete(self, before: Stored) -> None:
        doc = before.doc
        keys = [
            self._key(before.id),
            self._name(doc),
            self._ext(doc),
            self.kind.listing,
            *(self.member_of + m for m in sorted(member_ids(doc))),
        ]
        args = [before.id, str(before.version), self.kind.ext_prefix]
        if int(await self._delete(keys=keys, args=args)) != 1:
            raise Stale(before.id)

    async def by_name(self, name: str) -> list[str]:
        rid = await self.redis.get(self.kind.name_prefix + name.lower())
        return [_text(rid)] if rid else []

    async def by_external_id(self, external_id: str) -> list[str]:
        ids = await self.redis.smembers(self.kind.ext_prefix + external_id)  # type: ignore[misc]
        return sorted(_text(i) for i in ids)

    async def page(self, start: int, count: int) -> tuple[list[str], int]:
        """Ids in creation order from 0-based `start`, and the total."""
        total = int(await self.redis.zcard(self.kind.listing))
        if count <= 0:
            return [], total
        ids = await self.redis.zrange(self.kind.listing, start, start + count - 1)
        return [_text(i) for i in ids], total

    async def all_ids(self, limit: int) -> list[str]:
        ids = await self.redis.zrange(self.kind.listing, 0, limit - 1)
        return [_text(i) for i in ids]

    async def many(self, ids: list[str]) -> list[Stored]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hmget(self._key(rid), ["doc", "v"])
            rows = await pipe.execute()
        return [Stored(json.loads(r[0]), int(_text(r[1]))) for r in rows if r[0] is not None]

    async def groups_of(self, member_ids: list[str]) -> list[list[str]]:
        """For each id, the ids of the groups it is a member of."""
        if not member_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in member_ids:
                pipe.smembers(self.member_of + rid)
            rows = await pipe.execute()
        return [sorted(_text(i) for i in row) for row in rows]

    async def existing(self, ids: list[str]) -> set[str]:
        ids = [i for i in ids if 0 < len(i) <= 64]
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.exists(self._key(rid))
            found = await pipe.execute()
        return {rid for rid, hit in zip(ids, found, strict=True) if hit}

    async def forget_memberships(self, member_id: str) -> None:
        """Drop the reverse index of a member every group has let go of."""
        await self.redis.delete(self.member_of + member_id)


@dataclass(frozen=True, slots=True)
class ScimStores:
    users: ScimStore
    groups: ScimStore


def scim_stores(redis: Redis) -> ScimStores:
    return ScimStores(ScimStore(redis, USERS), ScimStore(redis, GROUPS))
