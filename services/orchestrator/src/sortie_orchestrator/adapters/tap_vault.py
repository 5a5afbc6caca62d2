"""The sealed Temporary Access Pass of a reversal, kept until the person who asked opens
it once (POST /v1/requests/{id}/temporary-access-pass:reveal).

Only the sealed blob is kept (sortie_core.sealed: the private key was given once to the
requester and never stored), in its own key beside the request (same hash tag), with a
time to live no longer than the pass's own lifetime; it is never in the request's document,
its views or a stream. Revealing deletes it atomically: of two callers racing, one gets it.

    sortie:tap:{<id>}   string: the sealed blob
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from sortie_core.sealed import unseal

_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def tap_key(request_id: uuid.UUID | str) -> str:
    return f"sortie:tap:{{{request_id}}}"


class Gone(Exception):
    """Revealed already, or expired."""


class TapVault:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._delete_if_same = redis.register_script(_DELETE_IF_SAME)

    async def keep(self, request_id: uuid.UUID | str, sealed: str, ttl_s: int) -> None:
        """Idempotent for a redelivered report: the first blob stays."""
        await self.redis.set(tap_key(request_id), sealed, ex=max(1, ttl_s), nx=True)

    async def reveal(self, request_id: uuid.UUID | str, unseal_key: str) -> str:
        """The pass, once: Gone afterwards; ValueError (the blob kept) for a wrong key."""
        raw = await self.redis.get(tap_key(request_id))
        if raw is None:
            raise Gone(str(request_id))
        blob = raw.decode() if isinstance(raw, bytes) else str(raw)
        secret = unseal(unseal_key, blob)
        if int(await self._delete_if_same(keys=[tap_key(request_id)], args=[blob])) != 1:
            raise Gone(str(request_id))
        return secret
