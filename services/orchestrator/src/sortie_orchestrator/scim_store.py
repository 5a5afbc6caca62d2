"""SCIM users in Redis. Every write is one compare-and-set on the user's version (a Lua
script) that also keeps the indexes right, so two HR systems racing on one user cannot
both win, and a userName is never given to two users.

    sortie:scim:user:<id>         hash: doc (JSON resource), v (version)
    sortie:scim:name:<username>   string: lower-cased userName -> id (uniqueness)
    sortie:scim:ext:<externalId>  set: ids carrying this externalId
    sortie:scim:users             zset: id -> created (epoch µs), the listing order
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

USERS = "sortie:scim:users"
_EXT = "sortie:scim:ext:"

_PUT = """
-- KEYS: user, name_new, name_old, ext_old, ext_new, users
-- ARGV: id, doc, expected version ('' = create), created score
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
if KEYS[4] ~= 'sortie:scim:ext:' then redis.call('SREM', KEYS[4], ARGV[1]) end
if KEYS[5] ~= 'sortie:scim:ext:' then redis.call('SADD', KEYS[5], ARGV[1]) end
local nv = (tonumber(v) or 0) + 1
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', nv)
redis.call('ZADD', KEYS[6], 'NX', ARGV[4], ARGV[1])
return nv
"""

_DELETE = """
-- KEYS: user, name, ext, users   ARGV: id, expected version
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if KEYS[3] ~= 'sortie:scim:ext:' then redis.call('SREM', KEYS[3], ARGV[1]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""


class Taken(Exception):
    """The userName belongs to another user."""


class Stale(Exception):
    """The user changed (or vanished) since it was read."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    doc: dict[str, Any]
    version: int


def user_key(uid: str) -> str:
    return f"sortie:scim:user:{uid}"


def name_key(user_name: str) -> str:
    return f"sortie:scim:name:{user_name.lower()}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ext_key(external_id: str | None) -> str:
    return f"{_EXT}{external_id or ''}"


class ScimStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._put = redis.register_script(_PUT)
        self._delete = redis.register_script(_DELETE)

    async def get(self, uid: str) -> StoredUser | None:
        raw = await self.redis.hmget(user_key(uid), ["doc", "v"])  # type: ignore[misc]
        if raw[0] is None:
            return None
        return StoredUser(json.loads(raw[0]), int(_text(raw[1])))

    async def put(self, doc: dict[str, Any], before: StoredUser | None, created_us: int) -> int:
        """Create (before None) or replace `before`; returns the new version."""
        uid = doc["id"]
        old_name = before.doc["userName"] if before else doc["userName"]
        keys = [
            user_key(uid),
            name_key(doc["userName"]),
            name_key(old_name),
            ext_key(before.doc.get("externalId") if before else None),
            ext_key(doc.get("externalId")),
            USERS,
        ]
        args = [uid, json.dumps(doc), "" if before is None else str(before.version), created_us]
        result = int(await self._put(keys=keys, args=args))
        if result == -2:
            raise Taken(doc["userName"])
        if result <= 0:
            raise Stale(uid)
        return result

    async def delete(self, before: StoredUser) -> None:
        doc = before.doc
        keys = [
            user_key(doc["id"]),
            name_key(doc["userName"]),
            ext_key(doc.get("externalId")),
            USERS,
        ]
        if int(await self._delete(keys=keys, args=[doc["id"], str(before.version)])) != 1:
            raise Stale(doc["id"])

    async def by_name(self, user_name: str) -> list[str]:
        uid = await self.redis.get(name_key(user_name))
        return [_text(uid)] if uid else []

    async def by_external_id(self, external_id: str) -> list[str]:
        ids = await self.redis.smembers(ext_key(external_id))  # type: ignore[misc]
        return sorted(_text(i) for i in ids)

    async def page(self, start: int, count: int) -> tuple[list[str], int]:
        """Ids in creation order from 0-based `start`, and the total."""
        total = int(await self.redis.zcard(USERS))
        if count <= 0:
            return [], total
        ids = await self.redis.zrange(USERS, start, start + count - 1)
        return [_text(i) for i in ids], total

    async def many(self, ids: list[str]) -> list[StoredUser]:
        found = []
        for uid in ids:
            user = await self.get(uid)
            if user is not None:
                found.append(user)
        return found
