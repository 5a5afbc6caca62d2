"""Workstation agents' presence records.

Each agent writes one hash, `sortie:agent:<host>`, that only its own Redis account may
write, adds its host to `sortie:agent-hosts` (SADD is all it may do there: add, never
remove), then wakes the orchestrator on its own Pub/Sub channel. The orchestrator re-reads
the record on each wake-up, and every record on a timer, and keeps the reverse index
user -> hosts, which it alone writes. A record whose heartbeat is older than
`LAPSE_FACTOR` heartbeats belongs to an agent that is treated as unreachable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from . import streams
from .redis_cluster import multi

AGENT_KEY_PREFIX = "sortie:agent:"
# Every host that ever wrote a record: where the orchestrator's timer finds new hosts.
AGENT_HOSTS = "sortie:agent-hosts"
LAPSE_FACTOR = 3
# The record outlives a lapse long enough for the orchestrator to report `unreachable`.
EXPIRE_FACTOR = 30


def agent_key(host: str) -> str:
    return f"{AGENT_KEY_PREFIX}{host.lower()}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as the agent saw it, for the administrator's station view."""

    id: str
    user: str
    state: str
    station: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    host: str
    version: str
    users: frozenset[str]
    heartbeat_at: float
    heartbeat_s: float
    # The host's group (a classroom), and its sessions; absent from older agents' records.
    group: str | None = None
    sessions: tuple[SessionInfo, ...] = ()

    def is_live(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now - self.heartbeat_at <= self.heartbeat_s * LAPSE_FACTOR


async def write_presence(redis: Redis, record: PresenceRecord) -> bool:
    """Write the record; returns whether one was there before (False after it lapsed or
    Redis lost its data: the agent then announces itself again)."""
    key = agent_key(record.host)
    async with multi(redis) as pipe:
        pipe.exists(key)
        pipe.hset(
            key,
            mapping={
                "host": record.host.lower(),
                "version": record.version,
                "users": json.dumps(sorted(u.lower() for u in record.users)),
                "heartbeat_at": repr(record.heartbeat_at),
                "heartbeat_s": repr(record.heartbeat_s),
                "group": record.group or "",
                "sessions": json.dumps(
                    [[s.id, s.user, s.state, s.station] for s in record.sessions[:500]]
                ),
            },
        )
        pipe.expire(key, max(60, int(record.heartbeat_s * EXPIRE_FACTOR)))
        pipe.sadd(AGENT_HOSTS, record.host.lower())
        existed, *_ = await pipe.execute()
    return bool(existed)


async def wake(redis: Redis, host: str, what: str) -> None:
    """Tell the orchestrator that `host` has news (`what`: `presence` or `results`)."""
    await redis.publish(streams.agent_wake_channel(host), what)


def parse_presence(raw: dict[bytes, bytes]) -> PresenceRecord | None:
    if not raw:
        return None
    try:
        return PresenceRecord(
            host=raw[b"host"].decode(),
            version=raw.get(b"version", b"").decode(),
            users=frozenset(json.loads(raw[b"users"])),
            heartbeat_at=float(raw[b"heartbeat_at"]),
            heartbeat_s=float(raw[b"heartbeat_s"]),
            group=raw.get(b"group", b"").decode() or None,
            sessions=tuple(
                SessionInfo(str(i), str(u), str(st), None if sn is None else str(sn))
                for i, u, st, sn in json.loads(raw.get(b"sessions", b"[]"))
            ),
        )
    except (KeyError, ValueError, TypeError):
        return None


async def read_presence(redis: Redis, host: str) -> PresenceRecord | None:
    raw: dict[bytes, bytes] = await redis.hgetall(agent_key(host))  # type: ignore[misc, assignment]
    return parse_presence(raw)
