"""The user's SSO credentials (the TGT and the service tickets a logout carries), kept
out of the streams.

Streams are read by several services and kept for days (and in the AOF); the TGT is a
bearer credential for the whole SSO session. So the orchestrator stores the request's
`SsoSession` under its own key (same hash tag as the request), written atomically with
the request and deleted when nothing may need it any more, and the commands on the
streams only say that it exists. Only the ent-worker's Redis user may read that key.
"""

from __future__ import annotations

import uuid

from pydantic import TypeAdapter
from redis.asyncio import Redis

from .coalesce import coalescer_for
from .events import ServiceTicket, SsoSession


async def _get(redis: Redis, key: str) -> bytes | None:
    # In the round trip the process's other entries in work share (sortie_core.coalesce).
    raw: bytes | None = await coalescer_for(redis).call(lambda pipe: pipe.get(key))
    return raw


def credentials_key(request_id: uuid.UUID | str) -> str:
    return f"sortie:cred:{{{request_id}}}"


async def load_credentials(redis: Redis, request_id: uuid.UUID | str) -> SsoSession | None:
    """The request's SSO session, or None when it is gone (the request ended)."""
    raw = await _get(redis, credentials_key(request_id))
    return None if raw is None else SsoSession.model_validate_json(raw)


# The service tickets the ent-worker found in the CAS for applications it could not log out
# yet (down, 503): the follow-up needs them, and once the SSO session is destroyed the CAS
# no longer lists them. Written and read by the ent-worker (the orchestrator's user, which
# writes the request's credentials, can reach `sortie:cred:*` too; no other service can),
# with the same hash tag as the request, deleted when nothing is left to retry, and
# expiring after the follow-up horizon in any case.
def kept_tickets_key(request_id: uuid.UUID | str) -> str:
    return f"sortie:cred:{{{request_id}}}:kept"


_KEPT = TypeAdapter(tuple[ServiceTicket, ...])


async def load_kept_tickets(redis: Redis, request_id: uuid.UUID | str) -> tuple[ServiceTicket, ...]:
    raw = await _get(redis, kept_tickets_key(request_id))
    return () if raw is None else _KEPT.validate_json(raw)


async def store_kept_tickets(
    redis: Redis, request_id: uuid.UUID | str, tickets: tuple[ServiceTicket, ...], ttl_s: int
) -> None:
    """Keep `tickets` for the follow-ups of the request; none: forget them."""
    key = kept_tickets_key(request_id)
    if tickets:
        await redis.set(key, _KEPT.dump_json(tickets), ex=ttl_s)
    else:
        await redis.delete(key)
