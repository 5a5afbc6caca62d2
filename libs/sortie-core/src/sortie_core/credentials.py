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

from redis.asyncio import Redis

from .events import SsoSession


def credentials_key(request_id: uuid.UUID | str) -> str:
    return f"sortie:cred:{{{request_id}}}"


async def load_credentials(redis: Redis, request_id: uuid.UUID | str) -> SsoSession | None:
    """The request's SSO session, or None when it is gone (the request ended)."""
    raw = await redis.get(credentials_key(request_id))
    return None if raw is None else SsoSession.model_validate_json(raw)
