"""Sortie's published signing keys (the JWKS of its OpenID Connect logout tokens).

Each ENT worker replica signs logout tokens with a private key that only it holds, and
keeps the public half alive in the Redis hash `JWKS_KEY` (field: the key id `kid`, value:
JSON `{"jwk": {...public JWK...}, "seen_at": <unix s>, "ttl_s": …, "grace_s": …,
"retired_at": <unix s> | null}`) by re-publishing it every `ttl_s / 3`. The orchestrator
serves every key seen within `ttl_s + grace_s` at `/.well-known/jwks.json`, so every
replica's key is published, whichever started last, and a key whose replica stopped stays
verifiable for its grace (>= the token lifetime plus clock skew).

Replicas never retire each other's keys. An operator retires a key (`retire_key`, e.g. a
leaked one): it is published only for its grace after that, its record is kept so it is
never revived, and the replica holding it learns on its next heartbeat
(`publish_signing_key` returns False), says so loudly and stops signing with it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis

JWKS_KEY = "sortie:oidc:jwks"
DEFAULT_TTL_S = 30.0

# Atomic: refresh this key unless it was retired; drop records past their publication.
# Retired records stay (a few bytes each), so a replica restarted with a retired key
# cannot publish it again.
_HEARTBEAT = """
local now = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  if not ok or type(rec) ~= 'table' or type(rec.seen_at) ~= 'number' then
    redis.call('HDEL', KEYS[1], all[i])
  elseif type(rec.retired_at) == 'number' then
    if all[i] == ARGV[1] then return 0 end
  elseif rec.seen_at + (tonumber(rec.ttl_s) or 0) + (tonumber(rec.grace_s) or 0) < now then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_RETIRE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if type(rec.retired_at) ~= 'number' then
  rec.retired_at = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
end
return 1
"""

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7517 §4.3: `use` and `key_ops` SHOULD NOT be used together, and cryptojwt (behind
# idpyoidc) refuses such a key (cryptojwt/jwk/__init__.py: "Not allowed to specify use
# and key_ops"); PyJWT's `to_jwk` adds `key_ops`. Sortie publishes `use: "sig"` only.
_DROPPED = frozenset({"key_ops"})


def public_jwk_for_jwks(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k not in _DROPPED}


async def publish_signing_key(
    redis: Redis,
    public_jwk: dict[str, Any],
    *,
    grace_s: float,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
) -> bool:
    """Publish (or keep alive) `public_jwk`, which carries its `kid`, for `ttl_s`; call
    again well within `ttl_s`. Returns False when the key was retired: stop signing."""
    if PRIVATE_MEMBERS & public_jwk.keys():
        raise ValueError("refusing to publish a JWK with private members")
    moment = time.time() if now is None else now
    record = json.dumps(
        {
            "jwk": public_jwk_for_jwks(public_jwk),
            "seen_at": moment,
            "ttl_s": ttl_s,
            "grace_s": grace_s,
            "retired_at": None,
        }
    )
    kid = public_jwk["kid"]
    alive = await redis.eval(_HEARTBEAT, 1, JWKS_KEY, kid, record, repr(moment))  # type: ignore[misc]
    return bool(alive)


async def retire_key(redis: Redis, kid: str, *, now: float | None = None) -> bool:
    """Retire a published key (it stays verifiable for its grace); False if unknown."""
    moment = time.time() if now is None else now
    return bool(await redis.eval(_RETIRE, 1, JWKS_KEY, kid, repr(moment)))  # type: ignore[misc]


async def published_keys(redis: Redis, *, now: float | None = None) -> list[dict[str, Any]]:
    """The public JWKs to serve at `now`: live keys first (by kid), then the ones in
    their grace, latest to go first."""
    moment = time.time() if now is None else now
    raw: dict[bytes | str, bytes | str] = await redis.hgetall(JWKS_KEY)  # type: ignore[misc]
    live: list[dict[str, Any]] = []
    grace: list[tuple[float, dict[str, Any]]] = []
    for value in raw.values():
        try:
            rec = json.loads(value)
            jwk = rec["jwk"]
            seen = float(rec["seen_at"])
            expires = seen + float(rec["ttl_s"])
            gone = expires + float(rec["grace_s"])
            retired = rec.get("retired_at")
            if retired is not None:
                expires = min(expires, float(retired))
                gone = min(gone, float(retired) + float(rec["grace_s"]))
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(jwk, dict) or PRIVATE_MEMBERS & jwk.keys():
            continue
        jwk = public_jwk_for_jwks(jwk)
        if moment <= expires:
            live.append(jwk)
        elif moment <= gone:
            grace.append((gone, jwk))
    grace.sort(key=lambda item: -item[0])
    return sorted(live, key=lambda k: str(k.get("kid"))) + [jwk for _, jwk in grace]


def generate_key_pem() -> bytes:
    """A fresh P-256 private key in PKCS#8 PEM, for a logout-token signer (`sortie up`
    makes one per workdir; an operator rotating a key makes another)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
