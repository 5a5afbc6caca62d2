"""The orchestrator's index of which workstation holds a session of which user.

Agents write only their own record (`sortie_core.presence`); the orchestrator re-reads
that record on each wake-up from the agent and, in `sweep`, every record on a timer, and
updates this index, which it alone writes:

    sortie:hosts:<account>   set of hosts where the agent reported a session of <account>
    sortie:agent-users:<h>   the users last indexed for host <h> (to compute removals)
    sortie:agents            set of every host ever seen (for the agents-online gauge)
    sortie:group:<g>         hosts whose agent reported group <g> (a classroom)
    sortie:agent-group:<h>   the group last indexed for host <h>
"""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sortie_core import streams
from sortie_core.pipelines import pipelined
from sortie_core.presence import (
    AGENT_HOSTS,
    LAPSE_FACTOR,
    PresenceRecord,
    agent_key,
    parse_presence,
    read_presence,
)
from sortie_core.redis_cluster import multi
from sortie_orchestrator.saga import HostPresence

AGENTS = "sortie:agents"


def hosts_key(account: str) -> str:
    return f"sortie:hosts:{account.lower()}"


def agent_users_key(host: str) -> str:
    return f"sortie:agent-users:{host.lower()}"


def group_key(group: str) -> str:
    return f"sortie:group:{group}"


def agent_group_key(host: str) -> str:
    return f"sortie:agent-group:{host.lower()}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _users(raw: bytes | str | None) -> frozenset[str] | None:
    """The users of a record or index entry; None when unreadable (then re-indexed)."""
    if raw is None:
        return frozenset()
    try:
        return frozenset(str(u).lower() for u in json.loads(raw))
    except (ValueError, TypeError):
        return None


class PresenceIndex:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def refresh(self, host: str) -> None:
        host = host.lower()
        record = await read_presence(self.redis, host)
        users = set(record.users) if record else set()
        previous_raw = await self.redis.get(agent_users_key(host))
        previous = set(json.loads(previous_raw)) if previous_raw else set()
        old_group = await self.redis.get(agent_group_key(host))
        old = old_group.decode() if isinstance(old_group, bytes) else old_group
        async with multi(self.redis) as pipe:
            # An expired record keeps its host in its group: reported unreachable there.
            if record is not None and (record.group or None) != (old or None):
                if old:
                    pipe.srem(group_key(old), host)
                if record.group:
                    pipe.sadd(group_key(record.group), host)
                    pipe.set(agent_group_key(host), record.group)
                else:
                    pipe.delete(agent_group_key(host))
            for user in previous - users:
                pipe.srem(hosts_key(user), host)
            for user in users - previous:
                pipe.sadd(hosts_key(user), host)
            pipe.set(agent_users_key(host), json.dumps(sorted(users)))
            pipe.sadd(AGENTS, host)
            await pipe.execute()

    async def sweep(self) -> int:
        """Re-index every host whose record's users or group differ from the index (hosts
        from `sortie:agent-hosts`, which agents add themselves to, and from the index), so
        a lost wake-up hides no session for longer than one sweep. Returns how many hosts
        were re-indexed."""
        # Two SMEMBERS, not SUNION: on a Cluster the two sets lie in different slots.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(AGENT_HOSTS)
            pipe.smembers(AGENTS)
            listed, indexed = await pipe.execute()
        members = set(listed) | set(indexed)
        hosts = sorted({h for h in (_s(m).lower() for m in members) if streams.valid_host(h)})
        changed = 0

        def queue(pipe: Pipeline, host: str) -> None:
            pipe.hmget(agent_key(host), ["users", "group"])
            pipe.get(agent_users_key(host))
            pipe.get(agent_group_key(host))

        async for host, ((users, group), indexed, old_group) in pipelined(self.redis, hosts, queue):
            if users is None:
                continue  # no record (any more): a lapsed host stays indexed, unreachable
            if _users(users) != _users(indexed) or _s(group or b"") != _s(old_group or b""):
                await self.refresh(host)
                changed += 1
        return changed

    async def hosts_for(self, account: str) -> list[HostPresence]:
        """Hosts that reported a session of `account`, each live or lapsed."""
        members = await self.redis.smembers(hosts_key(account))  # type: ignore[misc]
        hosts = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        if not hosts:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.hgetall(agent_key(host))
            raws = await pipe.execute()
        now = time.time()
        out: list[HostPresence] = []
        for host, raw in zip(hosts, raws, strict=True):
            record = parse_presence(raw)
            if record is not None and account.lower() not in record.users:
                continue  # the index is behind the record: no session there any more
            out.append(
                HostPresence(
                    host=host,
                    live=record is not None and record.is_live(now),
                    age_s=round(now - record.heartbeat_at, 3) if record is not None else None,
                )
            )
        return out

    async def record(self, host: str) -> PresenceRecord | None:
        """The presence record an agent wrote for `host` (None: none, or expired)."""
        return await read_presence(self.redis, host)

    async def host_names(self, group: str | None = None) -> list[str]:
        key = AGENTS if group is None else group_key(group)
        members = await self.redis.smembers(key)  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def records(
        self, group: str | None = None, hosts: list[str] | None = None
    ) -> list[tuple[str, PresenceRecord | None]]:
        """Every host ever seen (or those of `group`, or exactly `hosts`), with its record
        (None once it expired), by name."""
        if hosts is None:
            hosts = await self.host_names(group)
        return [
            (host, parse_presence(raw))
            async for host, (raw,) in pipelined(
                self.redis, hosts, lambda pipe, host: pipe.hgetall(agent_key(host))
            )
        ]

    async def known(self, host: str) -> bool:
        return bool(await self.redis.sismember(AGENTS, host.lower()))  # type: ignore[misc]

    async def count_online(self) -> int:
        members = await self.redis.smembers(AGENTS)  # type: ignore[misc]
        hosts = [m.decode() if isinstance(m, bytes) else m for m in members]
        if not hosts:
            return 0
        now = time.time()
        online = 0
        async for _, ((at, every),) in pipelined(
            self.redis,
            hosts,
            lambda pipe, host: pipe.hmget(agent_key(host), ["heartbeat_at", "heartbeat_s"]),
        ):
            if (
                at is not None
                and every is not None
                and now - float(at) <= LAPSE_FACTOR * float(every)
            ):
                online += 1
        return online
