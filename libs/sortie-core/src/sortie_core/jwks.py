"""Sortie's published signing keys (the JWKS of its OpenID Connect logout tokens).

The ENT worker signs logout tokens with a private key that only it holds; it publishes the
public half in the Redis hash `JWKS_KEY` (field: the key id `kid`, value: JSON
`{"jwk": {...public JWK...}, "retire_at": <unix seconds> | null}`), and the orchestrator
serves every key not yet retired at `/.well-known/jwks.json`.

Rotation: publishing a new signing key sets `retire_at = now + grace` on every other key
that had none, so tokens already signed with an old key stay verifiable until they expire
(grace >= the token lifetime plus clock skew). Every ENT worker replica must be restarted
with the new key within that grace.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

JWKS_KEY = "sortie:oidc:jwks"

# Atomic: set this key current, and give the previous ones their retirement time.
_PUBLISH = """
local now = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local ok, rec = pcall(cjson.decode, all[i + 1])
    if not ok or type(rec) ~= 'table' then
      redis.call('HDEL', KEYS[1], all[i])
    elseif rec.retire_at == nil or rec.retire_at == cjson.null then
      rec.retire_at = now + grace
      redis.call('HSET', KEYS[1], all[i], cjson.encode(rec))
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


async def publish_signing_key(
    redis: Redis, public_jwk: dict[str, Any], *, grace_s: float, now: float | None = None
) -> None:
    """Make `public_jwk` (which carries its `kid`) the current key; retire the others."""
    if PRIVATE_MEMBERS & public_jwk.keys():
        raise ValueError("refusing to publish a JWK with private members")
    kid = public_jwk["kid"]
    record = json.dumps({"jwk": public_jwk, "retire_at": None})
    moment = time.time() if now is None else now
    await redis.eval(_PUBLISH, 1, JWKS_KEY, kid, record, repr(moment), repr(grace_s))  # type: ignore[misc]


async def published_keys(redis: Redis, *, now: float | None = None) -> list[dict[str, Any]]:
    """The public JWKs not retired at `now`, current keys first."""
    moment = time.time() if now is None else now
    raw: dict[bytes | str, bytes | str] = await redis.hgetall(JWKS_KEY)  # type: ignore[misc]
    current: list[dict[str, Any]] = []
    retiring: list[tuple[float, dict[str, Any]]] = []
    for value in raw.values():
        try:
            rec = json.loads(value)
            jwk = rec["jwk"]
            retire_at = rec.get("retire_at")
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(jwk, dict) or PRIVATE_MEMBERS & jwk.keys():
            continue
        if retire_at is None:
            current.append(jwk)
        elif float(retire_at) > moment:
            retiring.append((float(retire_at), jwk))
    retiring.sort(key=lambda item: -item[0])
    return sorted(current, key=lambda k: str(k.get("kid"))) + [jwk for _, jwk in retiring]
