"""The public keys of Sortie's back-channel logout tokens, as the ENT worker published them
(sortie_core.jwks): what `GET /.well-known/jwks.json` serves."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from sortie_core.jwks import published_keys


class LogoutKeys:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def published(self) -> list[dict[str, Any]]:
        return await published_keys(self.redis)
