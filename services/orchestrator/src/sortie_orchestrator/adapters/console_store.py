"""The console's own keys: sessions and the record of who did what (built in bootstrap,
handed to the pages as `Deps.console`), sign-in states and logout-page links.

A session is a random id in an HttpOnly, SameSite=Strict cookie; its SHA-256 keys the
record in Redis (`sortie:ui:session:<hash>`, expiring with the session) and the index of
live sessions (`sortie:ui:sessions`, hash -> expiry), so that a person with the scope
`sessions:admin` can list and revoke them. A token session holds the token's digest and
is worth nothing once that token is removed; an SSO session (CAS, OpenID Connect) holds
the scopes and sites its roles gave at sign-in, until it expires or is revoked.

Every console action (and every sign-in, sign-out, revocation) is appended to the
`sortie:audit` stream: when, who, how they signed in, what, on what, and the outcome.

On a Redis Cluster the record and the index lie in different slots: a session opens as
index entry then record, and closes as record then index entry, one after the other
(`redis_cluster.multi`), so a crash half-way leaves at most an index entry without a
record, which the listing skips and the index's clean-up drops at its expiry; the
listing reads the records slot by slot (`mget_nonatomic`). One Redis keeps one MULTI and
one MGET.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis

from sortie_core.entries import as_str
from sortie_core.events import utcnow
from sortie_core.redis_cluster import is_cluster, multi

SESSIONS = "sortie:ui:sessions"
AUDIT = "sortie:audit"
AUDIT_MAXLEN = 100_000


def session_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def session_key(digest: str) -> str:
    return "sortie:ui:session:" + digest


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in: their name, how (`token`, `cas`, `oidc`), what they may do, and
    the sites they are limited to (None: every site)."""

    name: str
    via: str
    scopes: frozenset[str]
    sites: frozenset[str] | None
    session: str = ""

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def sees_site(self, site: str | None) -> bool:
        return self.sites is None or (site is not None and site in self.sites)


def record_of(viewer: Viewer, expires_at: datetime, digest: str | None = None) -> str:
    data: dict[str, Any] = {
        "name": viewer.name,
        "via": viewer.via,
        "scopes": sorted(viewer.scopes),
        "sites": sorted(viewer.sites) if viewer.sites is not None else None,
        "created_at": utcnow().isoformat(),
        "expires_at": expires_at.isoformat(),
    }
    if digest is not None:
        data["digest"] = digest
    return json.dumps(data)


class ConsoleStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def open_session(
        self, sid: str, viewer: Viewer, ttl_s: int, digest: str | None = None
    ) -> None:
        expires = utcnow() + timedelta(seconds=ttl_s)
        key = session_hash(sid)
        async with multi(self.redis) as pipe:
            pipe.zadd(SESSIONS, {key: expires.timestamp()})
            pipe.zremrangebyscore(SESSIONS, "-inf", utcnow().timestamp())
            pipe.set(session_key(key), record_of(viewer, expires, digest), ex=ttl_s)
            await pipe.execute()

    async def close_session(self, key: str) -> bool:
        async with multi(self.redis) as pipe:
            pipe.delete(session_key(key))
            pipe.zrem(SESSIONS, key)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def load(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(session_key(key))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def live_sessions(self, limit: int = 500) -> list[dict[str, Any]]:
        """The live sessions, soonest to expire first, each with its `id` (the hash)."""
        now = utcnow().timestamp()
        keys = [
            k.decode() if isinstance(k, bytes) else str(k)
            for k in await self.redis.zrangebyscore(SESSIONS, now, "+inf", 0, limit)
        ]
        if not keys:
            return []
        names = [session_key(k) for k in keys]
        if is_cluster(self.redis):
            raws = await cast(Any, self.redis).mget_nonatomic(names)
        else:
            raws = await self.redis.mget(names)
        out = []
        for key, raw in zip(keys, raws, strict=True):
            if raw is not None:
                data = json.loads(raw)
                data.pop("digest", None)
                out.append({"id": key, **data})
        return out

    async def audit(
        self, viewer: Viewer | str, action: str, target: str, outcome: str = "ok"
    ) -> None:
        who, via = (viewer.name, viewer.via) if isinstance(viewer, Viewer) else (viewer, "-")
        fields = {
            "at": utcnow().isoformat(),
            "who": who[:200],
            "via": via,
            "action": action,
            "target": target[:300],
            "outcome": outcome[:200],
        }
        await self.redis.xadd(AUDIT, fields, maxlen=AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]

    async def recent_audit(self, count: int = 50) -> list[dict[str, str]]:
        entries: Any = await self.redis.xrevrange(AUDIT, count=count)
        return [{as_str(k): as_str(v) for k, v in fields.items()} for _id, fields in entries]

    async def keep_state(self, key: str, value: str, ttl_s: int) -> None:
        """A sign-in's one-time state (login_sso.py)."""
        await self.redis.set(key, value, ex=ttl_s)

    async def take_state(self, key: str) -> str | None:
        """The state, once: read and deleted in one command."""
        raw = await self.redis.getdel(key)
        return as_str(raw) if raw is not None else None

    async def linked(self, key: str) -> str | None:
        """The request id a logout page's link is bound to (logoutpage.py)."""
        raw = await self.redis.get(key)
        return as_str(raw) if raw is not None else None
