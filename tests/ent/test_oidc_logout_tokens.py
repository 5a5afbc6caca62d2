"""Sortie's logout tokens (signed with PyJWT), verified with joserfc, an independent JOSE
library, against the JWKS the orchestrator serves; across a key rotation."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet
from redis.asyncio import Redis

from sortie_core.jwks import JWKS_KEY, generate_key_pem, publish_signing_key
from sortie_ent.oidc import BACKCHANNEL_LOGOUT_EVENT, LogoutTokenSigner
from sortie_testkit.waiting import wait_until_async

ISSUER = "https://sortie.ent.test"
JWKS_PATH = "/.well-known/jwks.json"


def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def verify(token: str, jwks: dict[str, object], audience: str = "ism") -> dict[str, object]:
    """What a relying party does (OIDC Back-Channel Logout 1.0 §2.6), with joserfc."""
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256", "RS256"])  # type: ignore[arg-type]
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": audience},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    assert BACKCHANNEL_LOGOUT_EVENT in decoded.claims["events"]
    assert "nonce" not in decoded.claims
    return dict(decoded.claims)


async def fetch_jwks(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get(JWKS_PATH, headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize("pem", [generate_key_pem, rsa_pem], ids=["ES256", "RS256"])
def test_a_token_is_what_pyjwt_encode_makes_and_pyjwt_verifies_it(pem: Any) -> None:
    """The header and claims are written once per key, not by `jwt.encode`: the same
    bytes, and a signature PyJWT checks."""
    signer = LogoutTokenSigner(pem(), issuer=ISSUER)
    token = signer.sign("ism", sub="alice", sid="s-1", now=1_800_000_000)
    header, payload, _ = token.split(".")
    claims = pyjwt.decode(
        token,
        pyjwt.PyJWK(signer.public_jwk).key,
        algorithms=[signer.algorithm],
        audience="ism",
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    reference = pyjwt.encode(
        claims,
        signer._key,
        algorithm=signer.algorithm,
        headers={"typ": "logout+jwt", "kid": signer.kid},
    )
    assert reference.split(".")[:2] == [header, payload]
    assert pyjwt.get_unverified_header(token) == {
        "alg": signer.algorithm,
        "kid": signer.kid,
        "typ": "logout+jwt",
    }
    assert claims["sid"] == "s-1" and claims["iat"] == 1_800_000_000


def test_logout_token_claims_and_header() -> None:
    signer = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER, ttl_s=90)
    token = signer.sign("ism", sub="alice", now=1_800_000_000)
    decoded = jwt.decode(token, KeySet.import_key_set({"keys": [signer.public_jwk]}))
    assert decoded.header == {"alg": "ES256", "typ": "logout+jwt", "kid": signer.kid}
    claims = decoded.claims
    assert claims["iss"] == ISSUER and claims["aud"] == "ism" and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 90
    assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert set(claims) == {"iss", "aud", "iat", "exp", "jti", "sub", "events"}
    # No private member of the key is ever part of what is published.
    assert not {"d", "p", "q"} & signer.public_jwk.keys()
    assert "PRIVATE" not in repr(signer) and signer.kid in repr(signer)
    # A fresh jti every time.
    assert (
        jwt.decode(
            signer.sign("ism", sub="alice"), KeySet.import_key_set({"keys": [signer.public_jwk]})
        ).claims["jti"]
        != claims["jti"]
    )


def test_signer_refuses_weak_or_unreadable_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sortie_ent.oidc import SigningKeyError

    with pytest.raises(SigningKeyError):
        LogoutTokenSigner(b"not a key", issuer=ISSUER)
    with pytest.raises(SigningKeyError):
        LogoutTokenSigner.from_file(tmp_path / "absent.pem", issuer=ISSUER)
    with pytest.raises(ValueError, match="sub or sid"):
        LogoutTokenSigner(generate_key_pem(), issuer=ISSUER).sign("ism", sub=None)


async def test_jwks_serves_keys_across_a_rotation(client: httpx.AsyncClient, redis: Redis) -> None:
    await redis.delete(JWKS_KEY)
    assert (await fetch_jwks(client)) == {"keys": []}

    old = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    assert await publish_signing_key(redis, old.public_jwk, grace_s=1.0, ttl_s=0.5)
    old_token = old.sign("ism", sub="alice")
    jwks = await fetch_jwks(client)
    assert [k["kid"] for k in jwks["keys"]] == [old.kid]  # type: ignore[index,union-attr]
    assert verify(old_token, jwks)["sub"] == "alice"

    # Rotation: a replica restarts with an RSA key; the old one stays published.
    new = LogoutTokenSigner(rsa_pem(), issuer=ISSUER)
    assert await publish_signing_key(redis, new.public_jwk, grace_s=1.0, ttl_s=0.5)
    new_token = new.sign("ism", sub="bob")
    jwks = await fetch_jwks(client)
    assert {k["kid"] for k in jwks["keys"]} == {new.kid, old.kid}  # type: ignore[index,union-attr]
    assert verify(new_token, jwks)["sub"] == "bob"
    assert verify(old_token, jwks)["sub"] == "alice"
    for key in jwks["keys"]:  # type: ignore[union-attr]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # type: ignore[arg-type]

    # The new key's replica keeps it alive; the old one's stopped: once its time-to-live
    # and grace are over, it is gone and its tokens no longer verify.
    async def old_key_gone() -> dict[str, object] | None:
        assert await publish_signing_key(redis, new.public_jwk, grace_s=1.0, ttl_s=0.5)
        current = await fetch_jwks(client)
        kids = [k["kid"] for k in current["keys"]]  # type: ignore[index,union-attr]
        assert new.kid in kids  # refreshed every 0.2 s, within its 0.5 s time-to-live
        return None if old.kid in kids else current

    started = time.monotonic()
    jwks = await wait_until_async(old_key_gone, 10, 0.2, "the old key's expiry")
    # Not before its time-to-live and grace (1.5 s) were over.
    assert time.monotonic() - started >= 1.0
    assert [k["kid"] for k in jwks["keys"]] == [new.kid]  # type: ignore[index,union-attr]
    assert verify(new_token, jwks)["sub"] == "bob"
    with pytest.raises(JoseError):
        verify(old_token, jwks)


async def test_forged_or_misaddressed_tokens_fail_verification(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await redis.delete(JWKS_KEY)
    signer = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    await publish_signing_key(redis, signer.public_jwk, grace_s=60)
    jwks = await fetch_jwks(client)
    token = signer.sign("ism", sub="alice")
    header, _payload, signature = token.split(".")
    other = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER).sign("ism", sub="alice")
    with pytest.raises(BadSignatureError):
        verify(f"{header}.{other.split('.')[1]}.{signature}", jwks)
    with pytest.raises(JoseError):
        verify(other, jwks)  # signed by a key that is not published
    with pytest.raises(JoseError):
        verify(token, jwks, audience="esper")


async def test_private_keys_are_never_published(redis: Redis) -> None:
    signer = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    private = {**signer.public_jwk, "d": "secret"}
    with pytest.raises(ValueError, match="private"):
        await publish_signing_key(redis, private, grace_s=60)
    # A corrupted or private record in Redis is never served.
    await redis.hset(JWKS_KEY, "bad", json.dumps({"jwk": private, "retire_at": None}))  # type: ignore[misc]
    from sortie_core.jwks import published_keys

    assert all("d" not in k for k in await published_keys(redis))
    await redis.delete(JWKS_KEY)
